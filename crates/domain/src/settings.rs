//! The typed registry of system settings: every setting's name, type, bounds, default and
//! meaning. Storage keeps only values that differ from the default; everything that reads or
//! writes a setting goes through here, so an unknown name, a wrong type or an out-of-range
//! value is refused the same way everywhere.

use serde::Serialize;
use serde_json::Value;

/// A setting's type and allowed range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SettingKind {
    /// A finite number within `[min, max]`.
    Float {
        /// Smallest allowed value.
        min: f64,
        /// Largest allowed value.
        max: f64,
    },
    /// A whole number within `[min, max]`.
    Integer {
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// `true` or `false`.
    Boolean,
}

/// A setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SettingValue {
    Float(f64),
    /// A whole number.
    Integer(i64),
    Boolean(bool),
}

impl SettingValue {
    /// As JSON, for storage and answers.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Float(v) => Value::from(*v),
            Self::Integer(v) => Value::from(*v),
            Self::Boolean(v) => Value::from(*v),
        }
    }

    /// The value as a float (integers widen).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Float(v) => Some(*v),
            Self::Integer(v) => Some(*v as f64),
            Self::Boolean(_) => None,
        }
    }

    /// The value as an integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Integer(v) => Some(*v),
            _ => None,
        }
    }
}

/// One entry of the registry.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SettingSpec {
    /// Name, as clients send it.
    pub name: &'static str,
    /// Type and bounds.
    #[serde(flatten)]
    pub kind: SettingKind,
    /// Value when never changed.
    pub default: SettingValue,
    /// Unit, for people.
    pub unit: &'static str,
    /// What it does.
    pub description: &'static str,
}

/// Why a setting change was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingError {
    /// No such setting.
    #[error("unknown setting")]
    Unknown,
    /// Wrong JSON type.
    #[error("must be {0}")]
    WrongType(&'static str),
    /// Outside the bounds.
    #[error("must be between {min} and {max}")]
    OutOfRange {
        /// Lower bound, as text.
        min: String,
        /// Upper bound, as text.
        max: String,
    },
    /// Contradicts another setting.
    #[error("{0}")]
    Inconsistent(String),
}

const fn float(
    name: &'static str,
    min: f64,
    max: f64,
    default: f64,
    unit: &'static str,
    description: &'static str,
) -> SettingSpec {
    SettingSpec {
        name,
        kind: SettingKind::Float { min, max },
        default: SettingValue::Float(default),
        unit,
        description,
    }
}

const fn integer(
    name: &'static str,
    min: i64,
    max: i64,
    default: i64,
    unit: &'static str,
    description: &'static str,
) -> SettingSpec {
    SettingSpec {
        name,
        kind: SettingKind::Integer { min, max },
        default: SettingValue::Integer(default),
        unit,
        description,
    }
}

/// A setting read as a `T`. The keys below are the only way to read a setting's value, and
/// each names an entry of [`SETTINGS`] of the matching kind (a test checks both), so a
/// misspelled name or a wrong type cannot compile; an unknown name read at run time no
/// longer yields a silent 0.
#[derive(Debug)]
pub struct Setting<T> {
    pub name: &'static str,
    value_type: std::marker::PhantomData<fn() -> T>,
}

impl<T> Clone for Setting<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Setting<T> {}

impl<T> Setting<T> {
    const fn new(name: &'static str) -> Self {
        Self {
            name,
            value_type: std::marker::PhantomData,
        }
    }
}

/// A type a setting's value can be read as.
pub trait SettingType: Sized {
    /// From the stored (or default) value of the key's own kind.
    fn from_value(value: SettingValue) -> Option<Self>;
}

impl SettingType for f64 {
    fn from_value(value: SettingValue) -> Option<Self> {
        value.as_f64()
    }
}

impl SettingType for i64 {
    fn from_value(value: SettingValue) -> Option<Self> {
        value.as_i64()
    }
}

impl<T: SettingType + Default> Setting<T> {
    /// This key's entry in [`SETTINGS`].
    pub fn spec(&self) -> &'static SettingSpec {
        // Every key is declared with an entry (`every_key_names_an_entry_of_its_kind`).
        spec(self.name).unwrap_or(&SETTINGS[0])
    }

    /// The value, from what is stored or the default.
    pub fn read(&self, stored: Option<SettingValue>) -> T {
        stored
            .and_then(T::from_value)
            .or_else(|| T::from_value(self.spec().default))
            // Every default has its key's type (`every_key_names_an_entry_of_its_kind`).
            .unwrap_or_default()
    }
}

/// The typed keys of every setting.
pub mod key {
    use super::Setting;
    /// Warning above, critical above 1.1 × this.
    pub const MAX_TEMPERATURE_THRESHOLD: Setting<f64> = Setting::new("max_temperature_threshold");
    /// Warning below this.
    pub const MIN_TEMPERATURE_THRESHOLD: Setting<f64> = Setting::new("min_temperature_threshold");
    /// Warning above, critical above 1.1 × this.
    pub const MAX_PRESSURE_THRESHOLD: Setting<f64> = Setting::new("max_pressure_threshold");
    /// A machine silent for longer raises an inactivity alert.
    pub const INACTIVITY_TIMEOUT: Setting<i64> = Setting::new("inactivity_timeout");
    /// Readings below are physically impossible and refused.
    pub const TEMPERATURE_MIN_C: Setting<f64> = Setting::new("temperature_min_c");
    /// Readings above are refused.
    pub const TEMPERATURE_MAX_C: Setting<f64> = Setting::new("temperature_max_c");
    /// Readings above are refused.
    pub const PRESSURE_MAX_KPA: Setting<f64> = Setting::new("pressure_max_kpa");
    /// Readings above are refused.
    pub const SPEED_MAX_RPM: Setting<f64> = Setting::new("speed_max_rpm");
    /// Readings further in the future are refused.
    pub const INGEST_MAX_FUTURE_SKEW_SECS: Setting<i64> =
        Setting::new("ingest_max_future_skew_secs");
    /// Machines in one ingest batch.
    pub const INGEST_MAX_MACHINES_PER_BATCH: Setting<i64> =
        Setting::new("ingest_max_machines_per_batch");
    /// Readings in one ingest batch.
    pub const INGEST_MAX_READINGS_PER_BATCH: Setting<i64> =
        Setting::new("ingest_max_readings_per_batch");
    /// Largest ingest body, after decompression.
    pub const INGEST_MAX_BODY_BYTES: Setting<i64> = Setting::new("ingest_max_body_bytes");
    /// Ingest requests per gateway per minute.
    pub const GATEWAY_RATE_LIMIT_PER_MINUTE: Setting<i64> =
        Setting::new("gateway_rate_limit_per_minute");
    /// Largest history answer before a coarser interval is required.
    pub const QUERY_MAX_POINTS: Setting<i64> = Setting::new("query_max_points");
}

/// Every setting Plantline knows.
pub const SETTINGS: &[SettingSpec] = &[
    float(
        key::MAX_TEMPERATURE_THRESHOLD.name,
        -273.15,
        2000.0,
        80.0,
        "°C",
        "warning above, critical above 1.1 × this",
    ),
    float(
        key::MIN_TEMPERATURE_THRESHOLD.name,
        -273.15,
        2000.0,
        50.0,
        "°C",
        "warning below this",
    ),
    float(
        key::MAX_PRESSURE_THRESHOLD.name,
        0.0,
        1_000_000.0,
        150.0,
        "kPa",
        "warning above, critical above 1.1 × this",
    ),
    integer(
        key::INACTIVITY_TIMEOUT.name,
        60,
        604_800,
        3600,
        "s",
        "a machine silent for longer raises an inactivity alert",
    ),
    float(
        key::TEMPERATURE_MIN_C.name,
        -273.15,
        2000.0,
        -273.15,
        "°C",
        "readings below are physically impossible and refused",
    ),
    float(
        key::TEMPERATURE_MAX_C.name,
        -273.15,
        2000.0,
        2000.0,
        "°C",
        "readings above are refused",
    ),
    float(
        key::PRESSURE_MAX_KPA.name,
        0.0,
        1_000_000.0,
        1_000_000.0,
        "kPa",
        "readings above are refused",
    ),
    float(
        key::SPEED_MAX_RPM.name,
        0.0,
        100_000.0,
        100_000.0,
        "RPM",
        "readings above are refused",
    ),
    integer(
        key::INGEST_MAX_FUTURE_SKEW_SECS.name,
        0,
        86_400,
        300,
        "s",
        "readings further in the future are refused",
    ),
    integer(
        key::INGEST_MAX_MACHINES_PER_BATCH.name,
        1,
        10_000,
        500,
        "machines",
        "machines in one ingest batch",
    ),
    integer(
        key::INGEST_MAX_READINGS_PER_BATCH.name,
        1,
        100_000,
        20_000,
        "readings",
        "readings in one ingest batch",
    ),
    integer(
        key::INGEST_MAX_BODY_BYTES.name,
        1024,
        16_777_216,
        8_388_608,
        "bytes",
        "largest ingest body, after decompression",
    ),
    integer(
        key::GATEWAY_RATE_LIMIT_PER_MINUTE.name,
        1,
        1_000_000,
        1200,
        "requests/min",
        "ingest requests per gateway per minute",
    ),
    integer(
        key::QUERY_MAX_POINTS.name,
        100,
        1_000_000,
        50_000,
        "points",
        "largest history answer before a coarser interval is required",
    ),
];

/// Looks a setting up by name.
pub fn spec(name: &str) -> Option<&'static SettingSpec> {
    SETTINGS.iter().find(|s| s.name == name)
}

impl SettingSpec {
    /// Checks a proposed JSON value against the type and bounds.
    pub fn parse(&self, value: &Value) -> Result<SettingValue, SettingError> {
        match self.kind {
            SettingKind::Float { min, max } => {
                let v = value
                    .as_f64()
                    .filter(|v| v.is_finite())
                    .ok_or(SettingError::WrongType("a number"))?;
                if v < min || v > max {
                    return Err(SettingError::OutOfRange {
                        min: min.to_string(),
                        max: max.to_string(),
                    });
                }
                Ok(SettingValue::Float(v))
            }
            SettingKind::Integer { min, max } => {
                let v = value
                    .as_i64()
                    .ok_or(SettingError::WrongType("a whole number"))?;
                if v < min || v > max {
                    return Err(SettingError::OutOfRange {
                        min: min.to_string(),
                        max: max.to_string(),
                    });
                }
                Ok(SettingValue::Integer(v))
            }
            SettingKind::Boolean => value
                .as_bool()
                .map(SettingValue::Boolean)
                .ok_or(SettingError::WrongType("true or false")),
        }
    }
}

/// Pairs that must stay ordered: (smaller, larger).
const ORDERED: [(&str, &str); 2] = [
    ("min_temperature_threshold", "max_temperature_threshold"),
    ("temperature_min_c", "temperature_max_c"),
];

/// Checks rules across settings, given the effective value of each (after a change).
pub fn check_consistency(
    effective: impl Fn(&str) -> Option<SettingValue>,
) -> Result<(), (&'static str, SettingError)> {
    for (low, high) in ORDERED {
        let (Some(l), Some(h)) = (
            effective(low).and_then(|v| v.as_f64()),
            effective(high).and_then(|v| v.as_f64()),
        ) else {
            continue;
        };
        if l >= h {
            return Err((
                low,
                SettingError::Inconsistent(format!("must be less than {high} ({h})")),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_names_an_entry_of_its_kind() {
        assert!(
            matches!(
                spec(key::MAX_TEMPERATURE_THRESHOLD.name).map(|s| s.kind),
                Some(SettingKind::Float { .. })
            ),
            "MAX_TEMPERATURE_THRESHOLD"
        );
        let _: f64 = key::MAX_TEMPERATURE_THRESHOLD.read(None);
        assert!(
            matches!(
                spec(key::MIN_TEMPERATURE_THRESHOLD.name).map(|s| s.kind),
                Some(SettingKind::Float { .. })
            ),
            "MIN_TEMPERATURE_THRESHOLD"
        );
        let _: f64 = key::MIN_TEMPERATURE_THRESHOLD.read(None);
        assert!(
            matches!(
                spec(key::MAX_PRESSURE_THRESHOLD.name).map(|s| s.kind),
                Some(SettingKind::Float { .. })
            ),
            "MAX_PRESSURE_THRESHOLD"
        );
        let _: f64 = key::MAX_PRESSURE_THRESHOLD.read(None);
        assert!(
            matches!(
                spec(key::INACTIVITY_TIMEOUT.name).map(|s| s.kind),
                Some(SettingKind::Integer { .. })
            ),
            "INACTIVITY_TIMEOUT"
        );
        let _: i64 = key::INACTIVITY_TIMEOUT.read(None);
        assert!(
            matches!(
                spec(key::TEMPERATURE_MIN_C.name).map(|s| s.kind),
                Some(SettingKind::Float { .. })
            ),
            "TEMPERATURE_MIN_C"
        );
        let _: f64 = key::TEMPERATURE_MIN_C.read(None);
        assert!(
            matches!(
                spec(key::TEMPERATURE_MAX_C.name).map(|s| s.kind),
                Some(SettingKind::Float { .. })
            ),
            "TEMPERATURE_MAX_C"
        );
        let _: f64 = key::TEMPERATURE_MAX_C.read(None);
        assert!(
            matches!(
                spec(key::PRESSURE_MAX_KPA.name).map(|s| s.kind),
                Some(SettingKind::Float { .. })
            ),
            "PRESSURE_MAX_KPA"
        );
        let _: f64 = key::PRESSURE_MAX_KPA.read(None);
        assert!(
            matches!(
                spec(key::SPEED_MAX_RPM.name).map(|s| s.kind),
                Some(SettingKind::Float { .. })
            ),
            "SPEED_MAX_RPM"
        );
        let _: f64 = key::SPEED_MAX_RPM.read(None);
        assert!(
            matches!(
                spec(key::INGEST_MAX_FUTURE_SKEW_SECS.name).map(|s| s.kind),
                Some(SettingKind::Integer { .. })
            ),
            "INGEST_MAX_FUTURE_SKEW_SECS"
        );
        let _: i64 = key::INGEST_MAX_FUTURE_SKEW_SECS.read(None);
        assert!(
            matches!(
                spec(key::INGEST_MAX_MACHINES_PER_BATCH.name).map(|s| s.kind),
                Some(SettingKind::Integer { .. })
            ),
            "INGEST_MAX_MACHINES_PER_BATCH"
        );
        let _: i64 = key::INGEST_MAX_MACHINES_PER_BATCH.read(None);
        assert!(
            matches!(
                spec(key::INGEST_MAX_READINGS_PER_BATCH.name).map(|s| s.kind),
                Some(SettingKind::Integer { .. })
            ),
            "INGEST_MAX_READINGS_PER_BATCH"
        );
        let _: i64 = key::INGEST_MAX_READINGS_PER_BATCH.read(None);
        assert!(
            matches!(
                spec(key::INGEST_MAX_BODY_BYTES.name).map(|s| s.kind),
                Some(SettingKind::Integer { .. })
            ),
            "INGEST_MAX_BODY_BYTES"
        );
        let _: i64 = key::INGEST_MAX_BODY_BYTES.read(None);
        assert!(
            matches!(
                spec(key::GATEWAY_RATE_LIMIT_PER_MINUTE.name).map(|s| s.kind),
                Some(SettingKind::Integer { .. })
            ),
            "GATEWAY_RATE_LIMIT_PER_MINUTE"
        );
        let _: i64 = key::GATEWAY_RATE_LIMIT_PER_MINUTE.read(None);
        assert!(
            matches!(
                spec(key::QUERY_MAX_POINTS.name).map(|s| s.kind),
                Some(SettingKind::Integer { .. })
            ),
            "QUERY_MAX_POINTS"
        );
        let _: i64 = key::QUERY_MAX_POINTS.read(None);
        assert_eq!(SETTINGS.len(), 14, "every entry has its key");
    }
    use serde_json::json;

    #[test]
    fn defaults_are_within_their_own_bounds_and_names_unique() {
        for s in SETTINGS {
            assert_eq!(s.parse(&s.default.to_json()), Ok(s.default), "{}", s.name);
            assert_eq!(SETTINGS.iter().filter(|o| o.name == s.name).count(), 1);
        }
        assert!(check_consistency(|n| spec(n).map(|s| s.default)).is_ok());
    }

    #[test]
    fn wrong_types_and_ranges_are_refused_with_the_rule() {
        let threshold = spec("max_temperature_threshold").unwrap();
        assert_eq!(threshold.parse(&json!(85)), Ok(SettingValue::Float(85.0)));
        assert_eq!(
            threshold.parse(&json!("85")),
            Err(SettingError::WrongType("a number"))
        );
        assert!(matches!(
            threshold.parse(&json!(2000.5)),
            Err(SettingError::OutOfRange { .. })
        ));
        let timeout = spec("inactivity_timeout").unwrap();
        assert_eq!(
            timeout.parse(&json!(1.5)),
            Err(SettingError::WrongType("a whole number"))
        );
        assert!(spec("flux_capacitor").is_none());
    }

    #[test]
    fn thresholds_must_stay_ordered() {
        let effective = |n: &str| match n {
            "min_temperature_threshold" => Some(SettingValue::Float(90.0)),
            other => spec(other).map(|s| s.default),
        };
        let (name, err) = check_consistency(effective).unwrap_err();
        assert_eq!(name, "min_temperature_threshold");
        assert!(err.to_string().contains("max_temperature_threshold"));
    }
}
