//! History requests: every parameter parsed into a typed value before any query is built,
//! every problem reported at once.

use crate::reading::{Field, Timestamp, Violation};
use serde_json::Value;

/// Bucket width of an aggregated answer, or the raw readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// Every reading, paginated.
    Raw,
    OneMinute,
    FiveMinutes,
    FifteenMinutes,
    Hour,
    /// One day (local midnight in the request's time zone).
    Day,
}

impl Interval {
    /// Aggregated intervals, finest first.
    pub const AGGREGATED: [Self; 5] = [
        Self::OneMinute,
        Self::FiveMinutes,
        Self::FifteenMinutes,
        Self::Hour,
        Self::Day,
    ];

    /// The spelling in requests and in InfluxQL's `time(...)`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::OneMinute => "1m",
            Self::FiveMinutes => "5m",
            Self::FifteenMinutes => "15m",
            Self::Hour => "1h",
            Self::Day => "1d",
        }
    }

    /// Bucket width in seconds (0 for raw).
    pub fn seconds(&self) -> i64 {
        match self {
            Self::Raw => 0,
            Self::OneMinute => 60,
            Self::FiveMinutes => 300,
            Self::FifteenMinutes => 900,
            Self::Hour => 3600,
            Self::Day => 86_400,
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Raw]
            .into_iter()
            .chain(Self::AGGREGATED)
            .find(|i| i.as_str() == text)
    }
}

/// An aggregate of a field over a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Arithmetic mean (answered under the field's own name).
    Mean,
    Min,
    Max,
    Count,
}

impl Aggregate {
    /// Request spelling and InfluxQL function name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Min => "min",
            Self::Max => "max",
            Self::Count => "count",
        }
    }

    /// The answer column for `field`: `temperature` for the mean, `temperature_max`, ...
    pub fn column(&self, field: Field) -> String {
        match self {
            Self::Mean => field.as_str().to_owned(),
            other => format!("{}_{}", field.as_str(), other.as_str()),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Mean, Self::Min, Self::Max, Self::Count]
            .into_iter()
            .find(|a| a.as_str() == text)
    }
}

/// An IANA time-zone name (`Europe/Berlin`), restricted to the characters such names use;
/// the store checks that the zone exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZoneName(String);

impl TimeZoneName {
    pub fn parse(text: &str) -> Option<Self> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+-/".contains(&b));
        ok.then(|| Self(text.to_owned()))
    }

    /// Whether this is UTC (no zone clause needed).
    pub fn is_utc(&self) -> bool {
        self.0 == "UTC"
    }
}

impl AsRef<str> for TimeZoneName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The query-string parameters as sent.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// RFC 3339, required.
    pub start_time: Option<String>,
    /// RFC 3339, default now.
    pub end_time: Option<String>,
    /// `raw`, `1m`, `5m`, `15m`, `1h`, `1d`.
    pub interval: Option<String>,
    /// Comma-separated subset of temperature, pressure, speed, or `all` (the default).
    pub fields: Option<String>,
    /// Comma-separated subset of mean, min, max, count.
    pub agg: Option<String>,
    /// IANA zone for day buckets.
    pub tz: Option<String>,
    /// 1..=10000.
    pub limit: Option<String>,
    /// Records to skip (the seed's paging); not with `cursor`.
    pub offset: Option<String>,
    /// Opaque position from a previous page.
    pub cursor: Option<String>,
}

/// A validated history request.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    /// Inclusive start.
    pub start: Timestamp,
    /// Exclusive end.
    pub end: Timestamp,
    pub interval: Interval,
    /// Requested fields, in storage order.
    pub fields: Vec<Field>,
    pub aggregates: Vec<Aggregate>,
    /// Zone of day buckets.
    pub tz: TimeZoneName,
    /// Page size (records: readings or buckets).
    pub limit: usize,
    /// Records skipped before the page; 0 with a cursor.
    pub offset: usize,
    /// Raw readings strictly after this time (the previous page's last).
    pub after: Option<Timestamp>,
}

/// Encodes the position after `last` as an opaque cursor.
pub fn encode_cursor(last: Timestamp) -> String {
    use std::fmt::Write;
    // Hex of the nanoseconds with a version prefix: opaque to clients, cheap to check.
    let mut out = String::from("c1");
    let _ = write!(out, "{:016x}", last.nanos());
    out
}

fn decode_cursor(text: &str) -> Option<Timestamp> {
    let hex = text.strip_prefix("c1")?;
    (hex.len() == 16)
        .then(|| i64::from_str_radix(hex, 16).ok())
        .flatten()
        .map(Timestamp::from_nanos)
}

fn list<T>(text: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    let mut items = Vec::new();
    for part in text.split(',').map(str::trim) {
        match parse(part) {
            Some(item) => items.push(item),
            None => return Err(part.to_owned()),
        }
    }
    Ok(items)
}

impl HistoryQuery {
    /// Deepest offset accepted: InfluxDB reads and discards every skipped reading, so deep
    /// pages are for cursors.
    pub const MAX_OFFSET: usize = 1_000_000;

    /// Parses every parameter; `now` is the default end; `max_points` bounds the buckets of
    /// an aggregated answer (a finer request is refused with the coarsest-needed interval).
    pub fn parse(
        params: &HistoryParams,
        now: Timestamp,
        max_points: i64,
    ) -> Result<Self, Vec<Violation>> {
        let mut problems = Problems::default();
        let (start, end) = parse_range(params, now, &mut problems);
        let interval = parse_interval(params.interval.as_deref(), &mut problems);
        let fields = parse_fields(params.fields.as_deref(), &mut problems);
        let aggregates = parse_aggregates(params.agg.as_deref(), interval, &mut problems);
        let tz = parse_tz(params.tz.as_deref(), &mut problems);
        let limit = parse_limit(params.limit.as_deref(), &mut problems);
        let offset = parse_offset(params, &mut problems);
        let after = parse_cursor(params.cursor.as_deref(), interval, &mut problems);
        if let (Some(s), Some(e), Some(i)) = (start, end, interval) {
            check_buckets(s, e, i, max_points, &mut problems);
        }
        match (start, end, interval) {
            (Some(start), Some(end), Some(interval)) if problems.0.is_empty() => Ok(Self {
                start,
                end,
                interval,
                fields,
                aggregates,
                tz,
                limit,
                offset,
                after,
            }),
            _ => Err(problems.0),
        }
    }
}

/// The problems of one request, in parameter order: all of them are reported at once.
#[derive(Default)]
struct Problems(Vec<Violation>);

impl Problems {
    fn add(&mut self, name: &str, message: impl Into<String>, value: Option<&str>) {
        self.0
            .push(Violation::new(name, message, value.map(Value::from)));
    }
}

fn parse_time(name: &str, text: &str, problems: &mut Problems) -> Option<Timestamp> {
    Timestamp::parse_rfc3339(text)
        .map_err(|m| problems.add(name, m, Some(text)))
        .ok()
}

fn parse_range(
    params: &HistoryParams,
    now: Timestamp,
    problems: &mut Problems,
) -> (Option<Timestamp>, Option<Timestamp>) {
    let start = match params.start_time.as_deref() {
        None => {
            problems.add("start_time", "is required (RFC 3339)", None);
            None
        }
        Some(text) => parse_time("start_time", text, problems),
    };
    let end = match params.end_time.as_deref() {
        None => Some(now),
        Some(text) => parse_time("end_time", text, problems),
    };
    if let (Some(s), Some(e)) = (start, end) {
        if s >= e {
            problems.add(
                "end_time",
                "must be after start_time",
                params.end_time.as_deref(),
            );
        } else if e.nanos().checked_sub(s.nanos()).is_none() {
            // Both ends are representable, their distance in nanoseconds need not be.
            problems.add(
                "end_time",
                "is too far from start_time (at most 292 years)",
                params.end_time.as_deref(),
            );
        }
    }
    (start, end)
}

fn parse_interval(text: Option<&str>, problems: &mut Problems) -> Option<Interval> {
    let Some(text) = text else {
        return Some(Interval::Raw);
    };
    let parsed = Interval::parse(text);
    if parsed.is_none() {
        problems.add(
            "interval",
            "must be one of raw, 1m, 5m, 15m, 1h, 1d",
            Some(text),
        );
    }
    parsed
}

fn parse_fields(text: Option<&str>, problems: &mut Problems) -> Vec<Field> {
    match text {
        // `all` is the seed's spelling of the default.
        None | Some("all") => Field::ALL.to_vec(),
        Some(text) => list(text, Field::parse).unwrap_or_else(|part| {
            problems.add(
                "fields",
                format!("unknown field {part:?}; use temperature, pressure, speed"),
                Some(text),
            );
            Vec::new()
        }),
    }
}

fn parse_aggregates(
    text: Option<&str>,
    interval: Option<Interval>,
    problems: &mut Problems,
) -> Vec<Aggregate> {
    let Some(text) = text else {
        return vec![Aggregate::Mean];
    };
    if interval == Some(Interval::Raw) {
        problems.add("agg", "applies to aggregated intervals only", Some(text));
    }
    list(text, Aggregate::parse).unwrap_or_else(|part| {
        problems.add(
            "agg",
            format!("unknown aggregate {part:?}; use mean, min, max, count"),
            Some(text),
        );
        Vec::new()
    })
}

fn parse_tz(text: Option<&str>, problems: &mut Problems) -> TimeZoneName {
    let utc = || TimeZoneName("UTC".to_owned());
    match text {
        None => utc(),
        Some(text) => TimeZoneName::parse(text).unwrap_or_else(|| {
            problems.add(
                "tz",
                "must be an IANA time zone such as Europe/Berlin",
                Some(text),
            );
            utc()
        }),
    }
}

fn parse_limit(text: Option<&str>, problems: &mut Problems) -> usize {
    let Some(text) = text else {
        return 1000;
    };
    match text.parse::<usize>() {
        Ok(n) if (1..=10_000).contains(&n) => n,
        _ => {
            problems.add("limit", "must be 1 to 10000", Some(text));
            1000
        }
    }
}

fn parse_offset(params: &HistoryParams, problems: &mut Problems) -> usize {
    let Some(text) = params.offset.as_deref() else {
        return 0;
    };
    let max = HistoryQuery::MAX_OFFSET;
    match text.parse::<usize>() {
        Ok(n) if n <= max && params.cursor.is_none() => n,
        Ok(n) if n <= max => {
            problems.add("offset", "cannot be combined with cursor", Some(text));
            0
        }
        _ => {
            problems.add("offset", format!("must be 0 to {max}"), Some(text));
            0
        }
    }
}

fn parse_cursor(
    text: Option<&str>,
    interval: Option<Interval>,
    problems: &mut Problems,
) -> Option<Timestamp> {
    let text = text?;
    if interval != Some(Interval::Raw) {
        problems.add("cursor", "applies to raw readings only", Some(text));
    }
    let decoded = decode_cursor(text);
    if decoded.is_none() {
        problems.add("cursor", "is not a cursor this API handed out", Some(text));
    }
    decoded
}

/// Refuses an aggregated answer of more than `max_points` buckets, naming the finest
/// interval that would fit.
fn check_buckets(
    start: Timestamp,
    end: Timestamp,
    interval: Interval,
    max_points: i64,
    problems: &mut Problems,
) {
    if interval == Interval::Raw {
        return;
    }
    let span = end.nanos().saturating_sub(start.nanos()) / 1_000_000_000;
    let buckets = |i: Interval| span / i.seconds() + 1;
    if buckets(interval) <= max_points {
        return;
    }
    let coarser = Interval::AGGREGATED
        .into_iter()
        .find(|c| buckets(*c) <= max_points)
        .map(|c| format!("use interval {} or coarser, or a shorter range", c.as_str()))
        .unwrap_or_else(|| "use a shorter range".to_owned());
    problems.add(
        "interval",
        format!(
            "{} buckets exceed the maximum of {max_points}; {coarser}",
            buckets(interval)
        ),
        Some(interval.as_str()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-03-01T00:00:00Z").unwrap()
    }

    fn params(pairs: &[(&str, &str)]) -> HistoryParams {
        let map: std::collections::HashMap<&str, String> =
            pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        HistoryParams {
            start_time: map.get("start_time").cloned(),
            end_time: map.get("end_time").cloned(),
            interval: map.get("interval").cloned(),
            fields: map.get("fields").cloned(),
            agg: map.get("agg").cloned(),
            tz: map.get("tz").cloned(),
            limit: map.get("limit").cloned(),
            offset: map.get("offset").cloned(),
            cursor: map.get("cursor").cloned(),
        }
    }

    #[test]
    fn a_range_longer_than_time_can_count_is_refused_not_overflowed() {
        let errors = HistoryQuery::parse(
            &params(&[
                ("start_time", "1678-01-01T00:00:00Z"),
                ("end_time", "2261-12-31T00:00:00Z"),
                ("interval", "1d"),
            ]),
            now(),
            50_000,
        )
        .unwrap_err();
        assert_eq!(errors[0].path, "end_time");
    }

    #[test]
    fn the_seeds_offset_pages_unless_a_cursor_is_given() {
        let q = HistoryQuery::parse(
            &params(&[
                ("start_time", "2026-01-01T00:00:00Z"),
                ("limit", "10"),
                ("offset", "20"),
            ]),
            now(),
            50_000,
        )
        .unwrap();
        assert_eq!((q.limit, q.offset), (10, 20));
        let cursor = encode_cursor(now());
        for (offset, cursor) in [
            ("-1", None),
            ("x", None),
            ("1000001", None),
            ("5", Some(cursor.as_str())),
        ] {
            let mut pairs = vec![("start_time", "2026-01-01T00:00:00Z"), ("offset", offset)];
            pairs.extend(cursor.map(|c| ("cursor", c)));
            let errors = HistoryQuery::parse(&params(&pairs), now(), 50_000).unwrap_err();
            assert_eq!(errors[0].path, "offset", "{offset}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let errors = HistoryQuery::parse(
            &params(&[
                ("start_time", "yesterday"),
                ("interval", "2h"),
                ("fields", "temperature,humidity"),
                ("agg", "median"),
                ("limit", "0"),
                ("tz", "Mars/Olympus Mons"),
            ]),
            now(),
            50_000,
        )
        .unwrap_err();
        let names: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            names,
            ["start_time", "interval", "fields", "agg", "tz", "limit"]
        );
    }

    #[test]
    fn defaults_and_normalisation() {
        let q = HistoryQuery::parse(
            &params(&[("start_time", "2026-02-28T00:00:00+01:00")]),
            now(),
            50_000,
        )
        .unwrap();
        assert_eq!(q.interval, Interval::Raw);
        assert_eq!(q.fields, Field::ALL.to_vec());
        assert_eq!(q.end, now());
        assert_eq!(q.limit, 1000);
        assert!(q.tz.is_utc());
    }

    #[test]
    fn too_many_buckets_names_a_coarser_interval() {
        let errors = HistoryQuery::parse(
            &params(&[("start_time", "2026-01-01T00:00:00Z"), ("interval", "1m")]),
            now(),
            50_000,
        )
        .unwrap_err();
        assert!(
            errors[0].message.contains("use interval 5m or coarser"),
            "{}",
            errors[0].message
        );
        assert!(
            HistoryQuery::parse(
                &params(&[("start_time", "2026-01-01T00:00:00Z"), ("interval", "5m")]),
                now(),
                50_000
            )
            .is_ok()
        );
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let t = Timestamp::from_nanos(1_772_323_200_123_456_789);
        let cursor = encode_cursor(t);
        let q = HistoryQuery::parse(
            &params(&[("start_time", "2026-02-01T00:00:00Z"), ("cursor", &cursor)]),
            now(),
            50_000,
        )
        .unwrap();
        assert_eq!(q.after, Some(t));
        assert!(
            HistoryQuery::parse(
                &params(&[("start_time", "2026-02-01T00:00:00Z"), ("cursor", "abc")]),
                now(),
                50_000
            )
            .is_err()
        );
        assert_eq!(Aggregate::Max.column(Field::Speed), "speed_max");
        assert_eq!(Aggregate::Mean.column(Field::Speed), "speed");
    }
}
