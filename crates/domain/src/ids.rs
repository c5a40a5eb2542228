//! Typed identifiers, so a machine id can never be passed where a user id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    /// The text is not a UUID in any of its standard spellings.
    #[error("must be a UUID")]
    NotUuid,
    /// The text is empty, too long, or has characters outside `[A-Za-z0-9_-]`.
    #[error("must be 1 to 64 characters of letters, digits, '-' or '_'")]
    BadSlug,
}

/// The identity of one machine in the registry.
#[cfg_attr(feature = "sql", derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow), diesel(sql_type = diesel::sql_types::Uuid))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MachineId(Uuid);

impl MachineId {
    /// A fresh random id for a newly registered machine.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The underlying UUID, for storage adapters.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl From<Uuid> for MachineId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl FromStr for MachineId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| ParseIdError::NotUuid)
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A factory (plant site) identifier such as `A` or `plant-berlin`: it appears in MQTT topics
/// and InfluxDB tags, so it is restricted to characters that need no escaping in either.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct FactoryId(String);

impl FactoryId {
    /// Longest accepted factory id.
    pub const MAX_LEN: usize = 64;

    /// Parses a factory id, refusing anything that could break a topic or a tag.
    pub fn parse(raw: &str) -> Result<Self, ParseIdError> {
        let ok = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ParseIdError::BadSlug)
        }
    }
}

impl AsRef<str> for FactoryId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FactoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for FactoryId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_id_accepts_uuid_and_rejects_garbage() {
        let id: MachineId = "550e8400-e29b-41d4-a716-446655440000".parse().unwrap();
        assert_eq!(id.to_string(), "550e8400-e29b-41d4-a716-446655440000");
        assert_eq!("machine-1".parse::<MachineId>(), Err(ParseIdError::NotUuid));
    }

    #[test]
    fn factory_id_refuses_topic_and_tag_metacharacters() {
        assert!(FactoryId::parse("A").is_ok());
        assert!(FactoryId::parse("plant_berlin-2").is_ok());
        for bad in ["", "a/b", "a b", "a,b", "a=b", "+", "#", &"x".repeat(65)] {
            assert_eq!(FactoryId::parse(bad), Err(ParseIdError::BadSlug), "{bad:?}");
        }
    }
}
