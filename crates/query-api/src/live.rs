//! The live hub: one Redis subscription per query-api process (stored readings and alert
//! changes) fanned out to every stream client through a bounded broadcast channel. A client
//! too slow to keep up skips ahead (it is told with a `reset` event) instead of growing the
//! server's memory; the last events are kept for `Last-Event-ID` resumption.

use platform::redis::RedisClient;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use storage::registry::MachineRegistry;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Events kept for resumption, and the broadcast buffer each client may fall behind by.
pub const BACKLOG: usize = 512;

/// One event as streamed.
#[derive(Debug)]
pub struct LiveEvent {
    /// Sequence number (the SSE `id`).
    pub id: u64,
    /// `reading`, `alert` or `presence`.
    pub kind: &'static str,
    /// The machine it is about.
    pub machine_id: String,
    pub factory_id: String,
    pub location: String,
    /// The JSON payload as published.
    pub data: String,
}

/// The fan-out point (cheap to clone).
#[derive(Clone)]
pub struct LiveHub {
    sender: broadcast::Sender<Arc<LiveEvent>>,
    recent: Arc<Mutex<VecDeque<Arc<LiveEvent>>>>,
    next_id: Arc<AtomicU64>,
    /// Open streams. Readings are only subscribed to while someone watches: ingest-api then
    /// sees no audience and skips serialising every reading for nobody.
    watchers: Arc<std::sync::atomic::AtomicUsize>,
    watched: Arc<tokio::sync::Notify>,
    /// Since when readings have been subscribed to (`None`: not now).
    readings_since: Arc<tokio::sync::watch::Sender<Option<std::time::Instant>>>,
}

/// Held by an open stream; counts it as a watcher until dropped.
pub struct Watcher(LiveHub);

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for LiveHub {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(BACKLOG).0,
            recent: Arc::default(),
            // Ids start at the process's start time so a client's Last-Event-ID from another
            // replica or an earlier process is recognised as too old, not confused.
            next_id: Arc::new(AtomicU64::new(
                chrono::Utc::now().timestamp_micros().max(0) as u64
            )),
            watchers: Arc::default(),
            watched: Arc::default(),
            readings_since: Arc::new(tokio::sync::watch::Sender::new(None)),
        }
    }
}

impl LiveHub {
    /// A receiver for one client, and the guard that counts it as watching.
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<LiveEvent>>, Watcher) {
        self.watchers.fetch_add(1, Ordering::Relaxed);
        self.watched.notify_one();
        (self.sender.subscribe(), Watcher(self.clone()))
    }

    /// Waits (at most `limit`) until readings stored from now on reach this hub: the
    /// readings subscription is up and the write paths have had an audience poll to notice
    /// it. Immediate while others already watch. `false` when that did not happen in time.
    pub async fn wait_until_delivering(&self, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let mut since = self.readings_since.subscribe();
        loop {
            let subscribed_at = *since.borrow_and_update();
            match subscribed_at {
                Some(at) => {
                    let noticed =
                        tokio::time::Instant::from_std(at + storage::latest::AUDIENCE_POLL);
                    if tokio::time::Instant::now() >= noticed {
                        return true;
                    }
                    if noticed > deadline {
                        tokio::time::sleep_until(deadline).await;
                        return false;
                    }
                    tokio::time::sleep_until(noticed).await;
                }
                None => {
                    if tokio::time::timeout_at(deadline, since.changed())
                        .await
                        .is_err()
                    {
                        return false;
                    }
                }
            }
        }
    }

    /// The kept events after `last_id`, oldest first; `None` when `last_id` is older than
    /// what is kept (the client must reload).
    pub fn since(&self, last_id: u64) -> Option<Vec<Arc<LiveEvent>>> {
        let recent = self.recent.lock().ok()?;
        let oldest = recent.front().map_or(u64::MAX, |e| e.id);
        let newest = recent.back().map_or(0, |e| e.id);
        if last_id + 1 < oldest && last_id < newest {
            return None;
        }
        Some(recent.iter().filter(|e| e.id > last_id).cloned().collect())
    }

    fn publish(&self, kind: &'static str, tags: (String, String, String), data: String) {
        let (machine_id, factory_id, location) = tags;
        let event = Arc::new(LiveEvent {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            kind,
            machine_id,
            factory_id,
            location,
            data,
        });
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == BACKLOG {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        let _ = self.sender.send(event);
    }

    /// Relays Redis until `shutdown`: alert changes always, readings while someone watches.
    pub async fn run(
        self,
        redis: RedisClient,
        registry: MachineRegistry,
        shutdown: CancellationToken,
    ) {
        let alerts = [redis.key(platform::redis_keys::ALERTS_CHANNEL)];
        let presence = [redis.key(platform::redis_keys::PRESENCE_CHANNEL)];
        let readings = [redis.key(platform::redis_keys::LIVE_READINGS_CHANNEL)];
        let relay_presence = redis.for_each_message(
            &presence,
            "live presence",
            shutdown.clone(),
            None,
            |_, payload| {
                self.on_presence(payload);
                std::future::ready(())
            },
        );
        let relay_alerts = redis.for_each_message(
            &alerts,
            "live alerts",
            shutdown.clone(),
            None,
            |_, payload| {
                let (hub, registry) = (&self, &registry);
                async move { hub.on_alert(payload, registry).await }
            },
        );
        let relay_readings = async {
            loop {
                while self.watchers.load(Ordering::Relaxed) == 0 {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = self.watched.notified() => {}
                    }
                }
                let unwatched = shutdown.child_token();
                let watch = async {
                    while self.watchers.load(Ordering::Relaxed) > 0 {
                        tokio::select! {
                            () = unwatched.cancelled() => return,
                            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        }
                    }
                    unwatched.cancel();
                };
                let relay = redis.for_each_message(
                    &readings,
                    "live readings",
                    unwatched.clone(),
                    Some(&self.readings_since),
                    |_, payload| {
                        self.on_reading(payload);
                        std::future::ready(())
                    },
                );
                tokio::join!(relay, watch);
                if shutdown.is_cancelled() {
                    return;
                }
            }
        };
        tokio::join!(relay_alerts, relay_presence, relay_readings);
    }

    fn on_reading(&self, payload: String) {
        let Ok(message) = serde_json::from_str::<storage::latest::LiveReadings>(&payload) else {
            tracing::warn!("a live-readings message of another shape; skipped");
            return;
        };
        let tags = (
            message.machine_id.to_string(),
            message.factory_id,
            message.location,
        );
        self.publish("reading", tags, payload);
    }

    fn on_presence(&self, payload: String) {
        let Ok(event) = serde_json::from_str::<storage::presence::PresenceEvent>(&payload) else {
            tracing::warn!("a presence event of another shape; skipped");
            return;
        };
        let tags = (
            event.machine_id.to_string(),
            event.factory_id,
            event.location,
        );
        self.publish("presence", tags, payload);
    }

    async fn on_alert(&self, payload: String, registry: &MachineRegistry) {
        let Ok(event) = serde_json::from_str::<storage::alerts::AlertEvent>(&payload) else {
            tracing::warn!("an alert event of another shape; skipped");
            return;
        };
        let id = domain::MachineId::from(event.alert.machine_id);
        // For location filters: the write paths send it; an acknowledgement does not, and
        // the registry (cached) knows it.
        let location = match event.location {
            Some(location) => location,
            None => registry
                .lookup(&[id])
                .await
                .ok()
                .and_then(|found| found.get(&id).cloned().flatten())
                .map(|info| info.location)
                .unwrap_or_default(),
        };
        let tags = (id.to_string(), event.alert.factory_id, location);
        self.publish("alert", tags, payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags() -> (String, String, String) {
        ("m".into(), "A".into(), "Hall 1".into())
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_skips_ahead_and_memory_stays_bounded() {
        let hub = LiveHub::default();
        let (mut slow, _watching) = hub.subscribe();
        for i in 0..(3 * BACKLOG) {
            hub.publish("reading", tags(), format!("{{\"n\":{i}}}"));
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(skipped)) if skipped == 2 * BACKLOG as u64
        ));
        // Then it continues with what is still buffered, newest last.
        let next = slow.recv().await.unwrap();
        assert_eq!(next.data, format!("{{\"n\":{}}}", 2 * BACKLOG));
        assert_eq!(
            hub.recent.lock().unwrap().len(),
            BACKLOG,
            "the kept backlog is bounded"
        );
    }

    #[test]
    fn resumption_replays_what_is_kept_and_refuses_what_is_not() {
        let hub = LiveHub::default();
        for i in 0..(BACKLOG + 10) {
            hub.publish("reading", tags(), i.to_string());
        }
        let oldest = hub.recent.lock().unwrap().front().unwrap().id;
        let newest = hub.recent.lock().unwrap().back().unwrap().id;
        assert_eq!(hub.since(newest - 3).unwrap().len(), 3);
        assert_eq!(hub.since(newest).unwrap().len(), 0);
        assert_eq!(hub.since(oldest - 1).unwrap().len(), BACKLOG);
        assert!(
            hub.since(oldest - 5).is_none(),
            "too old: the client must reload"
        );
    }
}
