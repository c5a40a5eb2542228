//! Which slices of an aggregated request are read from the `hourly` rollup and which from
//! raw readings.

use domain::history::{HistoryQuery, Interval};
use domain::reading::Timestamp;
use platform::influx::ROLLUP_LOOKBACK_SECS;

pub(crate) const HOUR_NS: i64 = 3_600_000_000_000;

/// One slice of an aggregated request and where it is read from.
pub(crate) struct Part {
    pub(crate) from_rollup: bool,
    pub(crate) start: i64,
    pub(crate) end: i64,
}

/// Splits an aggregated request: whole hours old enough for the continuous queries (and the
/// late-hour maintenance) come from the `hourly` rollup, the rest from raw readings. Buckets
/// are then merged from sums, counts, minima and maxima, so the answer is the same number
/// either way. Zones other than UTC read raw data: their buckets need not align with UTC
/// hours (half-hour offsets).
pub(crate) fn plan(query: &HistoryQuery, now: Timestamp) -> Vec<Part> {
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
    let mut parts = Vec::with_capacity(3);
    if start < first {
        parts.push(Part {
            from_rollup: false,
            start,
            end: first,
        });
    }
    parts.push(Part {
        from_rollup: true,
        start: first,
        end: last,
    });
    if last < end {
        parts.push(Part {
            from_rollup: false,
            start: last,
            end,
        });
    }
    parts
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
        let parts = plan(&q, now);
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
            let parts = plan(&q, now);
            assert_eq!(parts.len(), 1);
            assert!(!parts[0].from_rollup);
        }
    }
}
