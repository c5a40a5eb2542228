//! Group commit: concurrent requests' points share one InfluxDB write.
//!
//! InfluxDB's cost of a write is mostly per request (HTTP, parsing, a WAL fsync), so a plant
//! whose gateways post ten readings a second each would otherwise pay it per gateway. Here at
//! most [`IN_FLIGHT`] writes run at once; whoever finds a free slot writes every body that
//! queued meanwhile, in one request. Under light load each body goes alone, at once; under
//! heavy load bodies gather while the slots are busy. Nothing waits on a timer.
//!
//! A body may bring its Redis bookkeeping (latest values, live updates, its caller's rate
//! count): after InfluxDB acknowledged a shared write, the bookkeeping of all its bodies goes
//! to Redis as one pipeline, one round trip for the group instead of one per request.
//!
//! A body's writer answers only once InfluxDB acknowledged the write it was part of. When a
//! shared write fails for any reason, every body of it is told so and its owner writes it alone
//! (with its own retries and, when InfluxDB refuses points, its own search for which): one
//! request's bad point never costs another request anything but a second write.

use bytes::{Bytes, BytesMut};
use deadpool_redis::redis;
use platform::influx::{InfluxClient, InfluxError};
use platform::redis::RedisClient;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{Semaphore, oneshot};

/// Shared writes in flight at once per group (one group per actix worker or bridge).
pub const IN_FLIGHT: usize = 2;

/// A shared write carries at most this many bytes of line protocol (about 10,000 points),
/// InfluxDB's recommended batch size; the bodies beyond wait for the next write.
pub const MAX_GROUP_BYTES: usize = 2 * 1024 * 1024;

/// What the bookkeeping after a shared write gets even when the write used up the deadline.
pub const BOOKKEEPING_AT_LEAST: std::time::Duration = std::time::Duration::from_millis(500);

/// Why a body was not stored by a shared write: its owner must write it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotShared;

/// What became of a body's bookkeeping after its shared write was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bookkeeping {
    /// Sent to Redis with the group's (or it brought none).
    Done,
    /// Redis did not take it in time; logged, the readings are stored.
    Lost,
}

struct Queued {
    id: u64,
    body: Bytes,
    then: Option<redis::Pipeline>,
    deadline: Instant,
    done: oneshot::Sender<Result<Bookkeeping, NotShared>>,
}

#[derive(Default)]
struct Queue {
    next_id: u64,
    bodies: VecDeque<Queued>,
}

/// One process's (or actix worker's) queue of bodies to write together; clones share it.
#[derive(Clone)]
pub struct WriteGroup {
    influx: InfluxClient,
    redis: RedisClient,
    queue: Arc<Mutex<Queue>>,
    slots: Arc<Semaphore>,
    /// `influx_write_bodies_per_request`: how many bodies each InfluxDB write carried.
    bodies_per_write: Option<prometheus::Histogram>,
}

impl WriteGroup {
    pub fn new(influx: InfluxClient, redis: RedisClient) -> Self {
        Self {
            influx,
            redis,
            queue: Arc::default(),
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
            bodies_per_write: None,
        }
    }

    /// The same group, observing each shared write's size on `histogram`.
    pub fn observed_by(self, histogram: prometheus::Histogram) -> Self {
        Self {
            bodies_per_write: Some(histogram),
            ..self
        }
    }

    /// Writes `body` (complete lines) with whatever else is queued, by `deadline`, then runs
    /// its bookkeeping `then` on Redis with the group's. `Ok` once InfluxDB acknowledged it;
    /// `Err` when the shared write failed (nothing is known about this body and nothing of
    /// `then` ran: its owner writes it alone).
    pub async fn write(
        &self,
        body: Bytes,
        then: Option<redis::Pipeline>,
        deadline: Instant,
    ) -> Result<Bookkeeping, NotShared> {
        let (done, outcome) = oneshot::channel();
        let own = {
            let mut queue = self.lock();
            let id = queue.next_id;
            queue.next_id += 1;
            queue.bodies.push_back(Queued {
                id,
                body,
                then,
                deadline,
                done,
            });
            id
        };
        let mut outcome = outcome;
        // Either another writer takes this body along, or this one gets a slot and writes the
        // queue's head until this body went out. A slot is held only for the InfluxDB write:
        // the bookkeeping after it must not keep the next group from InfluxDB.
        loop {
            let slot = tokio::select! {
                answered = &mut outcome => return answered.unwrap_or(Err(NotShared)),
                slot = self.slots.acquire() => slot,
            };
            // The semaphore is never closed; if it were, the owner writes alone.
            let Ok(slot) = slot else {
                return Err(NotShared);
            };
            let Some(group) = self.take_group_holding(own) else {
                break;
            };
            let carried_own = group.iter().any(|q| q.id == own);
            let written = self.write_group(&group).await;
            drop(slot);
            self.finish(group, written).await;
            if carried_own {
                break;
            }
        }
        outcome.await.unwrap_or(Err(NotShared))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Held only to push or drain: a poisoned lock still holds a consistent queue.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The queue's head up to [`MAX_GROUP_BYTES`] (at least one body), while body `own` is
    /// still queued; `None` once another writer took it.
    fn take_group_holding(&self, own: u64) -> Option<Vec<Queued>> {
        let mut queue = self.lock();
        if !queue.bodies.iter().any(|q| q.id == own) {
            return None;
        }
        let mut group = Vec::new();
        let mut bytes = 0;
        while let Some(next) = queue.bodies.front() {
            if !group.is_empty() && bytes + next.body.len() > MAX_GROUP_BYTES {
                break;
            }
            bytes += next.body.len();
            group.extend(queue.bodies.pop_front());
        }
        Some(group)
    }

    /// One InfluxDB write of the group's bodies; whether InfluxDB acknowledged it.
    async fn write_group(&self, group: &[Queued]) -> bool {
        if let Some(histogram) = &self.bodies_per_write {
            histogram.observe(group.len() as f64);
        }
        let body = match group {
            [only] => only.body.clone(),
            _ => {
                let mut joined = BytesMut::with_capacity(group.iter().map(|q| q.body.len()).sum());
                for queued in group {
                    joined.extend_from_slice(&queued.body);
                }
                joined.freeze()
            }
        };
        let left = earliest_deadline(group).saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.influx.write_lines(body, None)).await {
            Ok(Ok(())) => true,
            Ok(Err(err)) => {
                log_shared_failure(&err, group.len());
                false
            }
            Err(_) => false,
        }
    }

    /// After the group's write: its bookkeeping when it was stored, then every owner told.
    async fn finish(&self, group: Vec<Queued>, written: bool) {
        let outcome = if written {
            Ok(self.keep_books(&group).await)
        } else {
            Err(NotShared)
        };
        for queued in group {
            // The owner may have given up (its request was cancelled): nothing to tell.
            let _ = queued.done.send(outcome);
        }
    }

    /// The group's bookkeeping in one Redis round trip, within the earliest deadline (at
    /// least [`BOOKKEEPING_AT_LEAST`]: the readings are stored, a hung Redis must not hold
    /// the answers).
    async fn keep_books(&self, group: &[Queued]) -> Bookkeeping {
        let mut pipe = redis::pipe();
        for then in group.iter().filter_map(|q| q.then.as_ref()) {
            for cmd in then.cmd_iter() {
                pipe.add_command(cmd.clone()).ignore();
            }
        }
        if pipe.cmd_iter().next().is_none() {
            return Bookkeeping::Done;
        }
        let left = earliest_deadline(group)
            .saturating_duration_since(Instant::now())
            .max(BOOKKEEPING_AT_LEAST);
        match tokio::time::timeout(left, storage::latest::run_pipeline(&self.redis, &pipe)).await {
            Ok(Ok(())) => Bookkeeping::Done,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, requests = group.len(), "Redis lost: latest values and live updates skipped; retrying on the next batch");
                Bookkeeping::Lost
            }
            Err(_) => {
                tracing::warn!(
                    waited_ms = left.as_millis() as u64,
                    requests = group.len(),
                    "latest values not updated before the deadline; the readings are stored"
                );
                Bookkeeping::Lost
            }
        }
    }
}

fn earliest_deadline(group: &[Queued]) -> Instant {
    group
        .iter()
        .map(|q| q.deadline)
        .min()
        .unwrap_or_else(Instant::now)
}

fn log_shared_failure(err: &InfluxError, bodies: usize) {
    if bodies > 1 {
        tracing::debug!(error = %err, bodies, "a shared InfluxDB write failed; each body is written alone");
    }
}
