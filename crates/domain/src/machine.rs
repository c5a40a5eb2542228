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
    /// Sensor type outside the known set.
    #[error("must be one of temperature, pressure, speed, multi")]
    UnknownSensorType,
    /// Name empty, only whitespace, or longer than [`MachineName::MAX_LEN`].
    #[error("must be 1 to 255 characters and not blank")]
    BadName,
}

/// Operational state of a machine; mirrors the CHECK constraint on `machine_metadata.status`.
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

/// What a machine's sensor package measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorType {
    /// Temperature probe only.
    Temperature,
    /// Pressure transducer only.
    Pressure,
    /// Spindle or shaft speed only.
    Speed,
    /// A package reporting temperature, pressure and speed together.
    Multi,
}

impl SensorType {
    /// Every sensor type.
    pub const ALL: [Self; 4] = [Self::Temperature, Self::Pressure, Self::Speed, Self::Multi];

    /// The stored spelling, also used as the InfluxDB tag value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Temperature => "temperature",
            Self::Pressure => "pressure",
            Self::Speed => "speed",
            Self::Multi => "multi",
        }
    }
}

impl FromStr for SensorType {
    type Err = ParseMachineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or(ParseMachineError::UnknownSensorType)
    }
}

impl fmt::Display for SensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    fn sensor_type_rejects_unknown_kinds() {
        assert_eq!("speed".parse(), Ok(SensorType::Speed));
        assert_eq!(
            "humidity".parse::<SensorType>(),
            Err(ParseMachineError::UnknownSensorType)
        );
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
