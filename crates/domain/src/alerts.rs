//! Threshold alerts, judged the same way for HTTP and MQTT readings: above max → warning, above
//! 1.1 × max → critical, below min → warning. Pure: what a machine's readings say about each
//! watched metric; storing and de-duplicating is the platform's job.

use crate::reading::{Field, Reading};
use serde::{Deserialize, Serialize};

/// What an alert is about.
#[cfg_attr(feature = "sql", derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow), diesel(sql_type = diesel::sql_types::Text))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Temperature above max or below min.
    Temperature,
    /// Pressure above max.
    Pressure,
    /// No reading for longer than `inactivity_timeout`.
    Inactivity,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Self; 3] = [Self::Temperature, Self::Pressure, Self::Inactivity];

    /// The stored spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Temperature => "temperature",
            Self::Pressure => "pressure",
            Self::Inactivity => "inactivity",
        }
    }

    /// From the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

#[cfg_attr(feature = "sql", derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow), diesel(sql_type = diesel::sql_types::Text))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Outside the threshold.
    Warning,
    /// More than 10 % beyond a maximum.
    Critical,
}

impl Severity {
    /// The stored spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    /// From the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Warning, Self::Critical]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// The thresholds in force (typed settings, live).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// `max_temperature_threshold`.
    pub max_temperature: f64,
    /// `min_temperature_threshold`.
    pub min_temperature: f64,
    /// `max_pressure_threshold`.
    pub max_pressure: f64,
}

/// One out-of-range reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Breach {
    pub severity: Severity,
    /// The reading's value.
    pub value: f64,
    /// The threshold it crossed.
    pub threshold: f64,
    /// The reading's time (ns).
    pub at_ns: i64,
}

impl Thresholds {
    /// Judges one value of `metric`; `None` when it is within range.
    pub fn judge(&self, metric: Metric, value: f64, at_ns: i64) -> Option<Breach> {
        let breach = |severity, threshold| {
            Some(Breach {
                severity,
                value,
                threshold,
                at_ns,
            })
        };
        let max = match metric {
            Metric::Temperature => self.max_temperature,
            Metric::Pressure => self.max_pressure,
            Metric::Inactivity => return None,
        };
        if value > 1.1 * max {
            breach(Severity::Critical, max)
        } else if value > max {
            breach(Severity::Warning, max)
        } else if metric == Metric::Temperature && value < self.min_temperature {
            breach(Severity::Warning, self.min_temperature)
        } else {
            None
        }
    }
}

/// What one machine's stored readings say about one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub metric: Metric,
    /// How many readings were out of range.
    pub breaches: u32,
    /// The worst of them.
    pub worst: Option<Severity>,
    /// The oldest out-of-range reading.
    pub first_breach: Option<Breach>,
    /// The newest out-of-range reading.
    pub latest_breach: Option<Breach>,
    /// Whether the newest reading of this metric is back in range (closes an open alert).
    pub ends_normal: bool,
}

/// Judges a machine's readings metric by metric, in time order. Any reading at all ends an
/// inactivity alert.
pub fn observe(readings: &[Reading], thresholds: &Thresholds) -> Vec<Observation> {
    let mut sorted: Vec<&Reading> = readings.iter().collect();
    sorted.sort_by_key(|r| r.timestamp().nanos());
    let mut observations = Vec::new();
    for (metric, field) in [
        (Metric::Temperature, Field::Temperature),
        (Metric::Pressure, Field::Pressure),
    ] {
        let mut observation = Observation {
            metric,
            breaches: 0,
            worst: None,
            first_breach: None,
            latest_breach: None,
            ends_normal: false,
        };
        let mut seen = false;
        for reading in &sorted {
            let Some(value) = reading.value(field) else {
                continue;
            };
            seen = true;
            match thresholds.judge(metric, value, reading.timestamp().nanos()) {
                Some(breach) => {
                    observation.breaches += 1;
                    observation.worst = observation.worst.max(Some(breach.severity));
                    observation.first_breach.get_or_insert(breach);
                    observation.latest_breach = Some(breach);
                    observation.ends_normal = false;
                }
                None => observation.ends_normal = true,
            }
        }
        if seen {
            observations.push(observation);
        }
    }
    if !readings.is_empty() {
        observations.push(Observation {
            metric: Metric::Inactivity,
            breaches: 0,
            worst: None,
            first_breach: None,
            latest_breach: None,
            ends_normal: true,
        });
    }
    observations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{ReadingRules, Timestamp};

    const T: Thresholds = Thresholds {
        max_temperature: 80.0,
        min_temperature: 50.0,
        max_pressure: 150.0,
    };

    fn reading(seconds: i64, temperature: Option<f64>, pressure: Option<f64>) -> Reading {
        let rules =
            ReadingRules::defaults(Timestamp::parse_rfc3339("2025-01-15T12:00:00Z").unwrap());
        let ts = Timestamp::from_nanos(
            Timestamp::parse_rfc3339("2025-01-15T11:00:00Z")
                .unwrap()
                .nanos()
                + seconds * 1_000_000_000,
        );
        rules
            .reading(
                String::new,
                Ok(ts),
                [temperature, pressure, None],
                &mut Vec::new(),
            )
            .unwrap()
    }

    #[test]
    fn the_seed_rules_warning_critical_and_below_min() {
        assert_eq!(T.judge(Metric::Temperature, 80.0, 0), None);
        assert_eq!(
            T.judge(Metric::Temperature, 85.0, 0).map(|b| b.severity),
            Some(Severity::Warning)
        );
        assert_eq!(
            T.judge(Metric::Temperature, 88.5, 0).map(|b| b.severity),
            Some(Severity::Critical)
        );
        assert_eq!(
            T.judge(Metric::Temperature, 45.0, 0)
                .map(|b| (b.severity, b.threshold)),
            Some((Severity::Warning, 50.0))
        );
        assert_eq!(
            T.judge(Metric::Pressure, 166.0, 0).map(|b| b.severity),
            Some(Severity::Critical)
        );
        assert_eq!(
            T.judge(Metric::Pressure, 10.0, 0),
            None,
            "no minimum for pressure"
        );
    }

    #[test]
    fn the_newest_reading_decides_whether_the_condition_still_holds() {
        let readings = [
            reading(2, Some(70.0), None),
            reading(0, Some(90.0), Some(100.0)),
            reading(1, Some(85.0), None),
        ];
        let observed = observe(&readings, &T);
        let temperature = &observed[0];
        assert_eq!(temperature.metric, Metric::Temperature);
        assert_eq!(temperature.breaches, 2);
        assert_eq!(temperature.worst, Some(Severity::Critical));
        assert_eq!(temperature.latest_breach.map(|b| b.value), Some(85.0));
        assert_eq!(temperature.first_breach.map(|b| b.value), Some(90.0));
        assert!(temperature.ends_normal, "the newest reading (70) is normal");
        assert_eq!(observed[1].metric, Metric::Pressure);
        assert!(observed[1].ends_normal && observed[1].breaches == 0);
        assert_eq!(observed[2].metric, Metric::Inactivity);
        assert!(observed[2].ends_normal);
    }
}
