//! Revocations: `auth` writes them to Redis; every service mirrors them in memory, polling a
//! version counter, so checking a token costs a hash lookup rather than a Redis round trip.
//!
//! Redis layout (under the deployment prefix): a sorted set `revocations` whose members are
//! `jti:<token id>`, `sid:<login session>` or `sub:<subject>:<revoked-before unix seconds>`,
//! scored by the unix time
//! after which the entry no longer matters (the longest access-token lifetime has passed),
//! and a counter `revocations:version` bumped with every change.

use crate::redis::{RedisClient, RedisError};
use deadpool_redis::redis;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::redis_keys::{REVOCATIONS as SET, REVOCATIONS_VERSION as VERSION};

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What is revoked, as of the last successful sync.
#[derive(Debug, Default, Clone)]
pub struct RevokedView {
    tokens: HashSet<String>,
    sessions: HashSet<Uuid>,
    subjects: HashMap<Uuid, i64>,
}

impl RevokedView {
    /// Whether a token with this id, session, subject and issue time is revoked.
    pub fn is_revoked(
        &self,
        jti: &str,
        session: Option<&Uuid>,
        subject: &Uuid,
        issued_at: i64,
    ) -> bool {
        self.tokens.contains(jti)
            || session.is_some_and(|sid| self.sessions.contains(sid))
            || self
                .subjects
                .get(subject)
                .is_some_and(|revoked_before| issued_at <= *revoked_before)
    }

    fn from_members(members: Vec<String>) -> Self {
        let mut view = Self::default();
        for member in members {
            if let Some(jti) = member.strip_prefix("jti:") {
                view.tokens.insert(jti.to_owned());
            } else if let Some(sid) = member.strip_prefix("sid:") {
                if let Ok(sid) = sid.parse() {
                    view.sessions.insert(sid);
                }
            } else if let Some((subject, before)) = member
                .strip_prefix("sub:")
                .and_then(|rest| rest.split_once(':'))
                && let (Ok(subject), Ok(before)) = (subject.parse(), before.parse::<i64>())
            {
                let entry = view.subjects.entry(subject).or_insert(before);
                *entry = (*entry).max(before);
            }
        }
        view
    }
}

/// The mirror's state: fresh, or stale because Redis has not answered recently.
pub enum RevocationState {
    /// Synced within the staleness bound.
    Fresh(Arc<RevokedView>),
    /// Last sync too long ago; the view may miss recent revocations.
    Stale(Arc<RevokedView>),
}

/// The in-memory mirror every service keeps.
#[derive(Clone)]
pub struct RevocationCache {
    view: Arc<RwLock<Arc<RevokedView>>>,
    last_sync_millis: Arc<AtomicI64>,
    stale_after: Duration,
}

impl RevocationCache {
    /// An empty mirror that counts as stale until its first sync.
    pub fn new(stale_after: Duration) -> Self {
        Self {
            view: Arc::new(RwLock::new(Arc::new(RevokedView::default()))),
            last_sync_millis: Arc::new(AtomicI64::new(i64::MIN / 2)),
            stale_after,
        }
    }

    /// The current view and whether it can be trusted.
    pub fn state(&self) -> RevocationState {
        let view = self
            .view
            .read()
            .map(|guard| guard.clone())
            .unwrap_or_default();
        let age = now_millis() - self.last_sync_millis.load(Ordering::Relaxed);
        if age <= self.stale_after.as_millis() as i64 {
            RevocationState::Fresh(view)
        } else {
            RevocationState::Stale(view)
        }
    }

    /// Pulls the revocation set from Redis once.
    pub async fn sync(&self, redis: &RedisClient) -> Result<(), RedisError> {
        let members: Vec<String> = redis
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(redis.key(SET))
                    .arg(now_secs())
                    .arg("+inf"),
            )
            .await?;
        let view = Arc::new(RevokedView::from_members(members));
        if let Ok(mut guard) = self.view.write() {
            *guard = view;
        }
        self.last_sync_millis.store(now_millis(), Ordering::Relaxed);
        Ok(())
    }

    /// Keeps the mirror current until `shutdown`: polls the version counter every `every`
    /// and reloads the set when it moved. Redis trouble is logged once per outage.
    pub async fn run_sync(self, redis: RedisClient, every: Duration, shutdown: CancellationToken) {
        let mut seen_version: Option<i64> = None;
        let mut failing = false;
        loop {
            let outcome = async {
                let version: Option<i64> = redis
                    .query(redis::cmd("GET").arg(redis.key(VERSION)))
                    .await?;
                if version != seen_version || seen_version.is_none() {
                    self.sync(&redis).await?;
                    seen_version = version.or(Some(0));
                } else {
                    self.last_sync_millis.store(now_millis(), Ordering::Relaxed);
                }
                Ok::<_, RedisError>(())
            }
            .await;
            match outcome {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("revocation list reachable again");
                }
                Ok(()) => {}
                Err(err) if !failing => {
                    failing = true;
                    tracing::warn!(error = %err, "Redis lost: revocation list not synced; retrying");
                }
                Err(_) => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_revoked_for_tokens_issued_up_to_the_mark() {
        let subject = Uuid::new_v4();
        let session = Uuid::new_v4();
        let view = RevokedView::from_members(vec![
            format!("sub:{subject}:1000"),
            format!("sub:{subject}:900"),
            format!("sid:{session}"),
            "jti:abc".to_owned(),
            "garbage".to_owned(),
        ]);
        assert!(view.is_revoked("x", None, &subject, 1000));
        assert!(!view.is_revoked("x", None, &subject, 1001));
        assert!(view.is_revoked("abc", None, &Uuid::new_v4(), 5000));
        assert!(!view.is_revoked("abd", None, &Uuid::new_v4(), 5000));
        assert!(view.is_revoked("abd", Some(&session), &Uuid::new_v4(), 5000));
        assert!(!view.is_revoked("abd", Some(&Uuid::new_v4()), &Uuid::new_v4(), 5000));
    }

    #[test]
    fn a_new_cache_is_stale_until_synced() {
        let cache = RevocationCache::new(Duration::from_secs(3));
        assert!(matches!(cache.state(), RevocationState::Stale(_)));
    }
}
