//! Every Redis key and channel Plantline uses, in one place, so two services cannot disagree on
//! a name and the whole layout reads at a glance (ARCHITECTURE.md says who writes which).
//! Names are returned without the deployment prefix: `RedisClient::key` adds it.

use std::fmt::Display;

/// A machine's cached registry entry (or the negative marker for an unknown id).
pub fn machine(id: impl Display) -> String {
    format!("machine:{id}")
}

/// A machine's newest value per field (a hash), with the time of each.
pub fn latest(machine: impl Display) -> String {
    format!("latest:{machine}")
}

/// The metrics of a machine that have an open alert (a set): lets the write path skip
/// PostgreSQL for readings that change nothing.
pub fn open_alerts(machine: impl Display) -> String {
    format!("alert:open:{machine}")
}

/// One relay of one alert change to MQTT: the first bridge replica to claim it publishes.
pub fn alert_relayed(alert: impl Display, event: &str, count: i32) -> String {
    format!("alert:relayed:{alert}:{event}:{count}")
}

/// Hours whose rollups missed readings that arrived late (beyond the continuous queries'
/// look-back): a sorted set of hour starts (unix seconds), worked off by the rollup job.
pub const LATE_HOURS: &str = "rollup:late_hours";

/// Bumped whenever late readings changed past rollups: cached aggregates stamped with an
/// older value are not served.
pub const ROLLUP_GENERATION: &str = "rollup:generation";

/// Revoked tokens, sessions and subjects (a sorted set scored by when the entry stops mattering).
pub const REVOCATIONS: &str = "revocations";

/// Bumped with every revocation, so mirrors poll one integer.
pub const REVOCATIONS_VERSION: &str = "revocations:version";

/// Failed logins of one account (lower-cased).
pub fn login_failures_of_account(account: &str) -> String {
    format!("login:fail:account:{}", account.to_lowercase())
}

/// Failed logins from one client address.
pub fn login_failures_from_ip(ip: impl Display) -> String {
    format!("login:fail:ip:{ip}")
}

/// A credential pair (a hex digest, never the secret) already counted as one failed attempt
/// in the window: the same wrong pair again is no new guess and is not counted again.
pub fn login_attempt_seen(digest: &str) -> String {
    format!("login:fail:seen:{digest}")
}

/// Ingest requests of one caller in one minute (unix minutes).
pub fn ingest_rate(caller: impl Display, minute: i64) -> String {
    format!("ratelimit:ingest:{caller}:{minute}")
}

/// A one-use ticket that opens a live stream.
pub fn stream_ticket(ticket: &str) -> String {
    format!("stream:ticket:{ticket}")
}

/// A cached history answer of one machine (`digest` of the normalised query).
pub fn history(machine: impl Display, digest: &str) -> String {
    format!("history:{machine}:{digest}")
}

/// Channel: stored readings, published only while a stream watches.
pub const LIVE_READINGS_CHANNEL: &str = "live:readings";

/// Channel: alert changes (opened, updated, acknowledged, closed).
pub const ALERTS_CHANNEL: &str = "alerts";

/// Channel: a machine came online or went offline (`storage::presence::PresenceEvent`).
pub const PRESENCE_CHANNEL: &str = "presence";
