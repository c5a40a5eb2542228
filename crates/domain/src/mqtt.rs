//! MQTT topics: `factory/{factory_id}/machine/{machine_id}/telemetry`, optionally under a
//! deployment prefix. Parsed into typed ids before anything else looks at a message.

use crate::ids::{FactoryId, MachineId};

/// Why a topic is not a telemetry topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Not `factory/{factory}/machine/{machine}/telemetry` (under the prefix).
    #[error("topic must be factory/{{factory_id}}/machine/{{machine_id}}/telemetry")]
    Shape,
    /// The factory segment is not a valid factory id.
    #[error("invalid factory id in topic")]
    Factory,
    /// The machine segment is not a UUID.
    #[error("machine id in topic must be a UUID")]
    Machine,
}

/// Where a telemetry message came from, according to its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryTopic {
    pub factory_id: FactoryId,
    pub machine_id: MachineId,
}

impl TelemetryTopic {
    /// Parses `topic`, which must start with `prefix` (empty in production).
    pub fn parse(topic: &str, prefix: &str) -> Result<Self, TopicError> {
        let rest = topic.strip_prefix(prefix).ok_or(TopicError::Shape)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let ["factory", factory, "machine", machine, "telemetry"] = parts.as_slice() else {
            return Err(TopicError::Shape);
        };
        Ok(Self {
            factory_id: FactoryId::parse(factory).map_err(|_| TopicError::Factory)?,
            machine_id: machine.parse().map_err(|_| TopicError::Machine)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "550e8400-e29b-41d4-a716-446655440000";

    #[test]
    fn telemetry_topics_parse_and_others_do_not() {
        let t = TelemetryTopic::parse(&format!("factory/A/machine/{M}/telemetry"), "").unwrap();
        assert_eq!(t.factory_id.as_ref(), "A");
        assert_eq!(t.machine_id.to_string(), M);
        assert!(
            TelemetryTopic::parse(
                &format!("test/1/factory/B/machine/{M}/telemetry"),
                "test/1/"
            )
            .is_ok()
        );
        assert_eq!(
            TelemetryTopic::parse(&format!("factory/A/machine/{M}/status"), ""),
            Err(TopicError::Shape)
        );
        assert_eq!(
            TelemetryTopic::parse("factory/A/machine/m1/telemetry", ""),
            Err(TopicError::Machine)
        );
        assert_eq!(
            TelemetryTopic::parse(&format!("factory/A B/machine/{M}/telemetry"), ""),
            Err(TopicError::Factory)
        );
        assert_eq!(
            TelemetryTopic::parse(&format!("x/factory/A/machine/{M}/telemetry"), ""),
            Err(TopicError::Shape)
        );
    }
}
