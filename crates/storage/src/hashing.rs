//! Password hashing as a bounded resource. argon2id needs 19 MiB and tens of milliseconds of
//! one core per check; run per request without a bound, a burst of 128 wrong logins took auth
//! from 144 MiB to 1.5 GiB. Here a fixed set of threads (one per core), each with its own
//! reused working memory, takes checks from a short queue; when the queue is full the caller
//! gets 503 with `Retry-After` at once instead of waiting without limit.
//!
//! `auth` checks a secret at every login and keeps each thread's memory while logins keep
//! coming, handing it back after [`IDLE_BEFORE_FREEING`] without one; `ingest-api` checks one
//! only when a gateway's credentials are not in its cache, on one thread that hands the memory
//! back after each check.

use crate::secrets::Scratch;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use platform::ApiError;

type Job = Box<dyn FnOnce(&mut Scratch) + Send>;

/// A thread that kept its memory frees it after this long without a check: a burst of
/// logins must not leave auth holding 19 MiB per core for the rest of its life.
pub const IDLE_BEFORE_FREEING: std::time::Duration = std::time::Duration::from_secs(2);

/// Seconds a caller is asked to wait when every hashing thread and queue slot is taken.
const RETRY_AFTER_SECS: u64 = 1;

/// The hashing threads and their queue.
#[derive(Clone)]
pub struct HashPool {
    jobs: Sender<Job>,
    checks: prometheus::IntCounter,
}

impl HashPool {
    /// `threads` hashing threads (at least one) and room for `queue` waiting checks. With
    /// `keep_memory` each thread keeps its 19 MiB between checks; without, it frees them.
    pub fn start(
        threads: usize,
        queue: usize,
        keep_memory: bool,
        checks: prometheus::IntCounter,
    ) -> std::io::Result<Self> {
        let (jobs, receiver) = crossbeam_channel::bounded::<Job>(queue);
        for n in 0..threads.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || work(&receiver, keep_memory))?;
        }
        Ok(Self { jobs, checks })
    }

    /// One thread per core, and a queue of 16 checks per core: at ~25 ms a check, a caller
    /// waits at most about 0.4 s before its turn. Waiting costs no argon2 memory; only
    /// running checks do.
    pub fn for_this_machine(checks: prometheus::IntCounter) -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::start(cores, 16 * cores, true, checks)
    }

    /// For checks that are rare (a cache answers the rest): one thread, 16 waiting, the
    /// memory freed after each.
    pub fn occasional(checks: prometheus::IntCounter) -> std::io::Result<Self> {
        Self::start(1, 16, false, checks)
    }

    /// Runs `work` on a hashing thread; 503 when the queue is full.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Scratch) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        self.submit(work)?.await.map_err(|_| {
            tracing::error!("password hashing job failed");
            ApiError::internal()
        })
    }

    /// Queues `work` now, or refuses it now; the answer arrives on the receiver.
    fn submit<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Scratch) -> T + Send + 'static,
    ) -> Result<tokio::sync::oneshot::Receiver<T>, ApiError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |scratch| {
            let _ = reply.send(work(scratch));
        });
        match self.jobs.try_send(job) {
            Ok(()) => {
                self.checks.inc();
                Ok(answer)
            }
            Err(TrySendError::Full(_)) => {
                tracing::warn!("password checks saturated; refusing with 503");
                Err(ApiError::unavailable(
                    "too many logins at once; retry in a moment",
                    RETRY_AFTER_SECS,
                ))
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("password hashing threads are gone");
                Err(ApiError::internal())
            }
        }
    }
}

/// Each thread waits on the queue with its own timeout: a thread left idle frees its memory
/// even while another waits for the next job too.
fn work(receiver: &Receiver<Job>, keep_memory: bool) {
    let mut scratch = Scratch::default();
    loop {
        let job = if scratch.is_empty() {
            receiver.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            receiver.recv_timeout(IDLE_BEFORE_FREEING)
        };
        match job {
            Ok(job) => {
                job(&mut scratch);
                if !keep_memory {
                    scratch = Scratch::default();
                }
            }
            Err(RecvTimeoutError::Timeout) => scratch = Scratch::default(),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_the_queue_callers_get_503_at_once() {
        let counter = prometheus::IntCounter::new("t", "t").unwrap();
        let pool = HashPool::start(1, 1, true, counter.clone()).unwrap();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        // One job runs (held at the gate), one waits in the queue, the third is refused.
        let held = pool
            .submit(move |_| {
                started.send(()).unwrap();
                gate.recv().is_ok()
            })
            .unwrap();
        running
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the first job runs");
        let queued = pool.submit(|_| true).unwrap();
        let refused = pool.submit(|_| false).unwrap_err();
        assert_eq!(
            refused.status(),
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE
        );
        release.send(()).unwrap();
        assert!(held.await.unwrap());
        assert!(queued.await.unwrap());
        assert_eq!(counter.get(), 2, "refused checks are not counted as run");
    }
}
