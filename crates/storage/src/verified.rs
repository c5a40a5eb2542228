//! Gateway credentials this process verified lately. Keyed by SHA-256 of id and secret: the
//! secret itself is never kept, and a key only matches the exact pair that passed argon2.
//! Each entry remembers when it was verified, so a caller can hold it against the
//! revocations written since (disabled, deleted, secret rotated: `auth` revokes the
//! gateway as a subject) and decide how old an entry it trusts.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Who a verified credential belongs to: what a token needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedGateway {
    pub id: Uuid,
    pub client_id: String,
}

/// Entries beyond this are pruned of the expired ones (a process sees few gateways).
const PRUNE_ABOVE: usize = 10_000;

/// A remembered pair: whose, and when it passed argon2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recalled {
    pub gateway: VerifiedGateway,
    /// Unix seconds of the verification: revocations of the gateway from then on drop it.
    pub verified_at: i64,
    /// How long ago, on the monotonic clock.
    pub age: Duration,
}

/// Verified gateway credentials, each kept for `ttl` after it was last verified.
pub struct VerifiedGateways {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
    ttl: Duration,
}

struct Entry {
    gateway: VerifiedGateway,
    verified_at: i64,
    at: Instant,
}

/// The cache's key of a pair: SHA-256 of id, a zero byte, and secret.
pub fn pair_key(client_id: &str, secret: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(client_id.as_bytes());
    hasher.update([0u8]);
    hasher.update(secret.as_bytes());
    hasher.finalize().into()
}

impl VerifiedGateways {
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: Mutex::default(),
            ttl,
        }
    }

    /// `secret` passed argon2 for `gateway`, checked against the row read at `verified_at`
    /// (unix seconds).
    pub fn remember(&self, gateway: &VerifiedGateway, secret: &str, verified_at: i64) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= PRUNE_ABOVE {
            let ttl = self.ttl;
            entries.retain(|_, entry| entry.at.elapsed() <= ttl);
        }
        entries.insert(
            pair_key(&gateway.client_id, secret),
            Entry {
                gateway: gateway.clone(),
                verified_at,
                at: Instant::now(),
            },
        );
    }

    /// The gateway, if this exact pair was verified within the lifetime.
    pub fn recall(&self, client_id: &str, secret: &str) -> Option<Recalled> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(&pair_key(client_id, secret))
            .map(|entry| Recalled {
                gateway: entry.gateway.clone(),
                verified_at: entry.verified_at,
                age: entry.at.elapsed(),
            })
            .filter(|recalled| recalled.age <= self.ttl)
    }

    /// Drops every entry of the gateway `id` (disabled, deleted, refused).
    pub fn forget(&self, id: Uuid) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, entry| entry.gateway.id != id);
        }
    }

    /// Drops the entry of this pair (PostgreSQL refused it).
    pub fn forget_pair(&self, client_id: &str, secret: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&pair_key(client_id, secret));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_pair_within_its_lifetime_is_recalled() {
        let cache = VerifiedGateways::new(Duration::from_secs(60));
        let gateway = VerifiedGateway {
            id: Uuid::new_v4(),
            client_id: "line-1".into(),
        };
        cache.remember(&gateway, "s3cret", chrono::Utc::now().timestamp());
        let recalled = cache.recall("line-1", "s3cret").expect("the exact pair");
        assert_eq!(recalled.gateway, gateway);
        assert!((recalled.verified_at - chrono::Utc::now().timestamp()).abs() <= 1);
        assert_eq!(cache.recall("line-1", "s3cret "), None);
        assert_eq!(cache.recall("line-2", "s3cret"), None);
        cache.forget(gateway.id);
        assert_eq!(cache.recall("line-1", "s3cret"), None);

        let expired = VerifiedGateways::new(Duration::ZERO);
        expired.remember(&gateway, "s3cret", 0);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(expired.recall("line-1", "s3cret"), None);
    }
}
