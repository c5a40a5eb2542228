//! Readings: one machine's measurements at one instant, checked against physical bounds and
//! a time window. Built only through [`ReadingRules`], so code past the boundary never
//! re-checks.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// A point in time with nanosecond precision (what InfluxDB stores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Nanoseconds since the Unix epoch.
    pub fn nanos(&self) -> i64 {
        self.0
    }

    /// From nanoseconds since the epoch.
    pub fn from_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    /// As a UTC date-time.
    pub fn to_datetime(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.0)
    }

    /// Parses RFC 3339 with an explicit offset (`Z` or `+02:00`): a timestamp without
    /// offset means different instants on different gateways, so it is refused.
    pub fn parse_rfc3339(text: &str) -> Result<Self, &'static str> {
        let parsed = DateTime::parse_from_rfc3339(text)
            .map_err(|_| "must be an RFC 3339 timestamp with offset, e.g. 2025-01-15T10:30:00Z")?;
        parsed
            .with_timezone(&Utc)
            .timestamp_nanos_opt()
            .map(Self)
            .ok_or("is outside the representable range (1677..2262)")
    }
}

/// The three measured quantities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// °C
    Temperature,
    /// kPa
    Pressure,
    /// RPM
    Speed,
}

impl Field {
    /// All fields, in storage order.
    pub const ALL: [Self; 3] = [Self::Temperature, Self::Pressure, Self::Speed];

    /// The JSON / InfluxDB field name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Temperature => "temperature",
            Self::Pressure => "pressure",
            Self::Speed => "speed",
        }
    }

    /// Parses a field name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

/// A validated reading: a timestamp and at least one finite, in-range value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    timestamp: Timestamp,
    values: [Option<f64>; 3],
}

impl Reading {
    /// When it was measured.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// One field's value, if measured.
    pub fn value(&self, field: Field) -> Option<f64> {
        self.values[field as usize]
    }

    /// The measured fields with their values.
    pub fn values(&self) -> impl Iterator<Item = (Field, f64)> + '_ {
        Field::ALL
            .into_iter()
            .filter_map(|f| self.value(f).map(|v| (f, v)))
    }
}

/// One problem with one reading, located by a path relative to the reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// Path inside the request, e.g. `batch[1].readings[0].timestamp`.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// The offending value, when useful to echo.
    pub value: Option<Value>,
}

impl Violation {
    /// A violation at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>, value: Option<Value>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            value,
        }
    }
}

/// The rules a reading must satisfy, from the typed settings: physical bounds and the
/// accepted time window relative to `now`.
#[derive(Debug, Clone, Copy)]
pub struct ReadingRules {
    /// Inclusive bounds per field, indexed like [`Field::ALL`].
    pub bounds: [(f64, f64); 3],
    /// Readings further in the future than this are refused (clock skew allowance).
    pub max_future_skew_secs: i64,
    /// Readings older than this are refused (the raw retention: they would be dropped).
    pub max_age_secs: i64,
    pub now: Timestamp,
}

impl ReadingRules {
    /// Raw retention: 52 weeks.
    pub const RAW_RETENTION_SECS: i64 = 52 * 7 * 24 * 3600;

    /// The defaults of the settings registry, at `now`.
    pub fn defaults(now: Timestamp) -> Self {
        Self {
            bounds: [(-273.15, 2000.0), (0.0, 1_000_000.0), (0.0, 100_000.0)],
            max_future_skew_secs: 300,
            max_age_secs: Self::RAW_RETENTION_SECS,
            now,
        }
    }

    /// Checks a timestamp against the window.
    pub fn check_time(&self, timestamp: Timestamp) -> Result<(), String> {
        let ns = 1_000_000_000_i64;
        if timestamp.0
            > self
                .now
                .0
                .saturating_add(self.max_future_skew_secs.saturating_mul(ns))
        {
            return Err(format!(
                "is more than {} s in the future",
                self.max_future_skew_secs
            ));
        }
        // One hour of margin inside the retention so InfluxDB never drops what we accepted.
        let oldest = self
            .now
            .0
            .saturating_sub(self.max_age_secs.saturating_sub(3600).saturating_mul(ns));
        if timestamp.0 < oldest {
            return Err(format!(
                "is older than the raw retention ({} weeks)",
                self.max_age_secs / (7 * 24 * 3600)
            ));
        }
        Ok(())
    }

    /// Checks one value.
    pub fn check_value(&self, field: Field, value: f64) -> Result<(), String> {
        let (min, max) = self.bounds[field as usize];
        if !value.is_finite() {
            return Err("must be a finite number".to_owned());
        }
        if value < min || value > max {
            return Err(format!("must be between {min} and {max}"));
        }
        Ok(())
    }

    /// Builds a reading from already-typed parts, collecting every violation (paths are
    /// `{prefix}.timestamp`, `{prefix}.temperature`, ...). The prefix is only built when
    /// there is something to report: valid readings cost no allocation here.
    pub fn reading(
        &self,
        prefix: impl Fn() -> String,
        timestamp: Result<Timestamp, Violation>,
        values: [Option<f64>; 3],
        violations: &mut Vec<Violation>,
    ) -> Option<Reading> {
        let before = violations.len();
        let timestamp = match timestamp {
            Ok(ts) => match self.check_time(ts) {
                Ok(()) => Some(ts),
                Err(message) => {
                    violations.push(Violation::new(
                        format!("{}.timestamp", prefix()),
                        message,
                        Some(Value::from(ts.to_datetime().to_rfc3339())),
                    ));
                    None
                }
            },
            Err(violation) => {
                violations.push(violation);
                None
            }
        };
        for field in Field::ALL {
            if let Some(v) = values[field as usize]
                && let Err(message) = self.check_value(field, v)
            {
                violations.push(Violation::new(
                    format!("{}.{}", prefix(), field.as_str()),
                    message,
                    serde_json::Number::from_f64(v).map(Value::Number),
                ));
            }
        }
        if values.iter().all(Option::is_none) {
            violations.push(Violation::new(
                prefix(),
                "needs at least one of temperature, pressure, speed",
                None,
            ));
        }
        match timestamp {
            Some(timestamp) if violations.len() == before => Some(Reading { timestamp, values }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ReadingRules {
        ReadingRules::defaults(Timestamp::parse_rfc3339("2026-06-01T12:00:00Z").unwrap())
    }

    #[test]
    fn timestamps_need_an_offset_and_a_real_date() {
        assert!(Timestamp::parse_rfc3339("2026-06-01T12:00:00+02:00").is_ok());
        assert!(Timestamp::parse_rfc3339("2026-06-01T12:00:00.123456789Z").is_ok());
        assert!(Timestamp::parse_rfc3339("2026-06-01T12:00:00").is_err());
        assert!(Timestamp::parse_rfc3339("2025-13-45T10:30:00Z").is_err());
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn bounds_hold_at_the_edge_and_fail_just_past_it() {
        let r = rules();
        assert!(r.check_value(Field::Temperature, -273.15).is_ok());
        assert!(r.check_value(Field::Temperature, -273.16).is_err());
        assert!(r.check_value(Field::Temperature, 2000.0).is_ok());
        assert!(r.check_value(Field::Temperature, 2000.001).is_err());
        assert!(r.check_value(Field::Pressure, 0.0).is_ok());
        assert!(r.check_value(Field::Pressure, -0.001).is_err());
        assert!(r.check_value(Field::Pressure, 1_000_000.0).is_ok());
        assert!(r.check_value(Field::Pressure, 1_000_000.1).is_err());
        assert!(r.check_value(Field::Speed, 100_000.0).is_ok());
        assert!(r.check_value(Field::Speed, 100_000.5).is_err());
        assert!(r.check_value(Field::Speed, f64::NAN).is_err());
        assert!(r.check_value(Field::Speed, f64::INFINITY).is_err());
    }

    #[test]
    fn the_time_window_is_skew_ahead_and_retention_behind() {
        let r = rules();
        let s = 1_000_000_000_i64;
        assert!(r.check_time(Timestamp(r.now.0 + 300 * s)).is_ok());
        assert!(r.check_time(Timestamp(r.now.0 + 301 * s)).is_err());
        let oldest = r.now.0 - (ReadingRules::RAW_RETENTION_SECS - 3600) * s;
        assert!(r.check_time(Timestamp(oldest)).is_ok());
        assert!(r.check_time(Timestamp(oldest - 1)).is_err());
    }

    #[test]
    fn a_reading_needs_a_value_and_reports_every_problem() {
        let r = rules();
        let mut violations = Vec::new();
        let ts = Ok(r.now);
        assert!(
            r.reading(
                || "r".to_owned(),
                ts.clone(),
                [None, None, None],
                &mut violations
            )
            .is_none()
        );
        assert_eq!(violations[0].path, "r");
        violations.clear();
        let bad = r.reading(
            || "r".to_owned(),
            ts.clone(),
            [Some(9999.0), Some(-1.0), None],
            &mut violations,
        );
        assert!(bad.is_none());
        let paths: Vec<_> = violations.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(paths, ["r.temperature", "r.pressure"]);
        violations.clear();
        let good = r
            .reading(
                || "r".to_owned(),
                ts,
                [Some(72.5), None, Some(1500.0)],
                &mut violations,
            )
            .unwrap();
        assert_eq!(good.value(Field::Temperature), Some(72.5));
        assert_eq!(good.values().count(), 2);
    }
}
