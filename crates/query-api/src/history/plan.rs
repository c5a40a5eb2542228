//! Which slices of an aggregated request are read from the `hourly` rollup and which from
//! raw readings.

use domain::history::{HistoryQuery, Interval};
use domain::reading::Timestamp;
use platform::influx::ROLLUP_LOOKBACK_SECS;
use std::collections::BTreeSet;

pub(crate) const HOUR_NS: i64 = 3_600_000_000_000;

/// One slice of an aggregated request and where it is read from.
pub(crate) struct Part {
    pub(crate) from_rollup: bool,
    pub(crate) start: i64,
    pub(crate) end: i64,
}

/// Hours (unix seconds of their start) whose rollup waits for late readings to be added;
/// `None` when that cannot be known (Redis away): then no rollup is trusted.
pub(crate) type LateHours = Option<BTreeSet<i64>>;

/// More late stretches than this in one request read the whole range raw: one statement
/// per stretch would cost more than the raw read.
const MAX_LATE_STRETCHES: usize = 24;

/// Splits an aggregated request: whole hours old enough for the continuous queries (and the
/// late-hour maintenance) come from the `hourly` rollup, the rest from raw readings. Hours
/// marked late are read raw until their rollup is recomputed, so an answer right after a
/// backfill is exact. Buckets are then merged from sums, counts, minima and maxima, so the
/// answer is the same number either way. Zones other than UTC read raw data: their buckets
/// need not align with UTC hours (half-hour offsets).
pub(crate) fn plan(query: &HistoryQuery, now: Timestamp, late: &LateHours) -> Vec<Part> {
    let (start, end) = (query.start.nanos(), query.end.nanos());
    let whole = vec![Part {
        from_rollup: false,
        start,
        end,
    }];
    if !matches!(query.interval, Interval::Hour | Interval::Day) || !query.tz.is_utc() {
        return whole;
    }
    let horizon = now.nanos() - (ROLLUP_LOOKBACK_SECS + 600) * 1_000_000_000;
    // Saturating: a validated range may still touch the ends of the representable time.
    let first =
        (start.div_euclid(HOUR_NS) * HOUR_NS).saturating_add(if start.rem_euclid(HOUR_NS) == 0 {
            0
        } else {
            HOUR_NS
        });
    let last = end.min(horizon).div_euclid(HOUR_NS) * HOUR_NS;
    if first >= last {
        return whole;
    }
    let Some(rollup) = rollup_stretches(first, last, late) else {
        return whole;
    };
    let mut parts = Vec::with_capacity(rollup.len() + 2);
    if start < first {
        parts.push(Part {
            from_rollup: false,
            start,
            end: first,
        });
    }
    parts.extend(rollup);
    if last < end {
        parts.push(Part {
            from_rollup: false,
            start: last,
            end,
        });
    }
    parts
}

/// `[first, last)` as alternating rollup and raw parts, raw where an hour is marked late;
/// `None` when the rollup cannot be trusted at all.
fn rollup_stretches(first: i64, last: i64, late: &LateHours) -> Option<Vec<Part>> {
    let late = late.as_ref()?;
    let mut parts: Vec<Part> = Vec::new();
    let (first_hour, last_hour) = (first / 1_000_000_000, last / 1_000_000_000);
    let mut at = first;
    for hour in late.range(first_hour..last_hour) {
        let (from, to) = (hour * 1_000_000_000, (hour + 3600) * 1_000_000_000);
        if at < from {
            parts.push(Part {
                from_rollup: true,
                start: at,
                end: from,
            });
        }
        match parts.last_mut() {
            Some(raw) if !raw.from_rollup && raw.end == from => raw.end = to,
            _ => parts.push(Part {
                from_rollup: false,
                start: from,
                end: to,
            }),
        }
        at = to;
    }
    if at < last {
        parts.push(Part {
            from_rollup: true,
            start: at,
            end: last,
        });
    }
    let raw_stretches = parts.iter().filter(|p| !p.from_rollup).count();
    (raw_stretches <= MAX_LATE_STRETCHES).then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::history::HistoryParams;

    const HOUR: i64 = HOUR_NS;

    fn query(start: &str, end: &str, interval: &str) -> HistoryQuery {
        let params = HistoryParams {
            start_time: Some(start.into()),
            end_time: Some(end.into()),
            interval: Some(interval.into()),
            ..Default::default()
        };
        crate::history::test_query(params)
    }

    #[test]
    fn whole_settled_hours_come_from_the_rollup_and_the_edges_from_raw() {
        let now = Timestamp::parse_rfc3339("2026-01-10T00:00:00Z").unwrap();
        let q = query("2026-01-01T00:30:00Z", "2026-01-09T23:00:00Z", "1h");
        let parts = plan(&q, now, &Some(BTreeSet::new()));
        let shape: Vec<(bool, i64, i64)> = parts
            .iter()
            .map(|p| (p.from_rollup, p.start, p.end))
            .collect();
        let first_whole = q.start.nanos() + HOUR / 2;
        // The rollup stops at the horizon: 2 h 10 min before now, rounded down to an hour.
        let horizon =
            (now.nanos() - (ROLLUP_LOOKBACK_SECS + 600) * 1_000_000_000).div_euclid(HOUR) * HOUR;
        assert_eq!(
            shape,
            [
                (false, q.start.nanos(), first_whole),
                (true, first_whole, horizon),
                (false, horizon, q.end.nanos()),
            ]
        );
    }

    #[test]
    fn minute_buckets_and_recent_ranges_read_raw_only() {
        let now = Timestamp::parse_rfc3339("2026-01-10T00:00:00Z").unwrap();
        for q in [
            query("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "5m"),
            query("2026-01-09T23:00:00Z", "2026-01-10T00:00:00Z", "1h"),
        ] {
            let parts = plan(&q, now, &Some(BTreeSet::new()));
            assert_eq!(parts.len(), 1);
            assert!(!parts[0].from_rollup);
        }
    }

    #[test]
    fn hours_marked_late_are_read_raw_until_rolled_up_again() {
        let now = Timestamp::parse_rfc3339("2026-01-10T00:00:00Z").unwrap();
        let q = query("2026-01-09T00:00:00Z", "2026-01-09T12:00:00Z", "1h");
        let hour = |h: i64| q.start.nanos() + h * HOUR;
        let late: BTreeSet<i64> = [2, 3, 7].iter().map(|h| hour(*h) / 1_000_000_000).collect();
        let shape: Vec<(bool, i64, i64)> = plan(&q, now, &Some(late))
            .iter()
            .map(|p| (p.from_rollup, p.start, p.end))
            .collect();
        assert_eq!(
            shape,
            [
                (true, hour(0), hour(2)),
                (false, hour(2), hour(4)),
                (true, hour(4), hour(7)),
                (false, hour(7), hour(8)),
                (true, hour(8), hour(12)),
            ]
        );
        // Unknown late hours (Redis away): nothing from the rollup.
        let parts = plan(&q, now, &None);
        assert_eq!(parts.len(), 1);
        assert!(!parts[0].from_rollup);
    }
}
