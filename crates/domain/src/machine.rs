//! Machines as the registry knows them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a machine attribute was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseMachineError {
    /// Status outside the registry's CHECK constraint.
    #[error("must be one of active, inactive, maintenance, error")]
    UnknownStatus,
    /// Sensor label blank, too long, with control characters or a trailing backslash.
    #[error("must be 1 to 64 printable characters, not ending with a backslash")]
    BadSensorType,
    /// Name empty, only whitespace, or longer than [`MachineName::MAX_LEN`].
    #[error("must be 1 to 255 characters and not blank")]
    BadName,
}

/// Operational state of a machine; mirrors the CHECK constraint on `machine_metadata.status`.
#[cfg_attr(feature = "sql", derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow), diesel(sql_type = diesel::sql_types::Text))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineStatus {
    /// Running and expected to report telemetry.
    Active,
    /// Switched off or decommissioned: telemetry for it is refused.
    Inactive,
    /// Under maintenance: telemetry is accepted (technicians test-run machines).
    Maintenance,
    /// Reported a fault.
    Error,
}

impl MachineStatus {
    /// Every status, in the order the CHECK constraint lists them.
    pub const ALL: [Self; 4] = [Self::Active, Self::Inactive, Self::Maintenance, Self::Error];

    /// The stored spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
            Self::Maintenance => "maintenance",
            Self::Error => "error",
        }
    }
}

impl FromStr for MachineStatus {
    type Err = ParseMachineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or(ParseMachineError::UnknownStatus)
    }
}

impl fmt::Display for MachineStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The plant's own name for a machine's sensor package ("Temperature", "Vibration",
/// "Flow meter"): stored and shown as given, compared case-insensitively. Which fields a
/// reading may carry does not depend on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SensorType(String);

impl SensorType {
    /// Longest accepted label, matching the column width.
    pub const MAX_LEN: usize = 64;

    /// Trims surrounding whitespace; refuses blank, over-long, control characters, and a
    /// trailing backslash (InfluxDB 1.x cannot carry one at the end of a tag value).
    pub fn parse(raw: &str) -> Result<Self, ParseMachineError> {
        let trimmed = raw.trim();
        if trimmed.is_empty()
            || trimmed.chars().count() > Self::MAX_LEN
            || trimmed.chars().any(char::is_control)
            || trimmed.ends_with('\\')
        {
            return Err(ParseMachineError::BadSensorType);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// Whether `other` names the same label, ignoring case (`temperature` ~ `Temperature`).
    pub fn matches(&self, other: &str) -> bool {
        self.0.to_lowercase() == other.trim().to_lowercase()
    }
}

impl AsRef<str> for SensorType {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for SensorType {
    type Err = ParseMachineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for SensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A machine's display name: not blank, at most [`MachineName::MAX_LEN`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct MachineName(String);

impl MachineName {
    /// Longest accepted name, matching the column width.
    pub const MAX_LEN: usize = 255;

    /// Trims surrounding whitespace and checks the length.
    pub fn parse(raw: &str) -> Result<Self, ParseMachineError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.chars().count() > Self::MAX_LEN {
            return Err(ParseMachineError::BadName);
        }
        Ok(Self(trimmed.to_owned()))
    }
}

impl AsRef<str> for MachineName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_its_stored_spelling() {
        for status in MachineStatus::ALL {
            assert_eq!(status.as_str().parse::<MachineStatus>(), Ok(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert_eq!(
            "running".parse::<MachineStatus>(),
            Err(ParseMachineError::UnknownStatus)
        );
    }

    #[test]
    fn sensor_type_is_the_plants_label_kept_as_given() {
        let label = SensorType::parse(" Flow meter ").unwrap();
        assert_eq!(label.as_ref(), "Flow meter");
        assert!(label.matches("FLOW METER"));
        assert!(!label.matches("flow"));
        assert_eq!(
            SensorType::parse("Vibration").unwrap().as_ref(),
            "Vibration"
        );
        assert!(SensorType::parse(&"v".repeat(64)).is_ok());
        for bad in ["", "   ", "a\0b", "line\nbreak", "ends\\", &"v".repeat(65)] {
            assert_eq!(
                SensorType::parse(bad),
                Err(ParseMachineError::BadSensorType),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn machine_name_is_trimmed_and_bounded() {
        assert_eq!(
            MachineName::parse("  CNC Mill 1 ").unwrap().as_ref(),
            "CNC Mill 1"
        );
        assert_eq!(MachineName::parse("   "), Err(ParseMachineError::BadName));
        assert!(MachineName::parse(&"m".repeat(255)).is_ok());
        assert_eq!(
            MachineName::parse(&"m".repeat(256)),
            Err(ParseMachineError::BadName)
        );
    }
}
