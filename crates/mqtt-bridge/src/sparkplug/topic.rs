//! Sparkplug B topics (3.0 §4.1): `spBv1.0/{group_id}/{message_type}/{edge_node_id}[/{device_id}]`,
//! and the host applications' `spBv1.0/STATE/{host_id}`, under the deployment prefix.

/// The topic namespace of Sparkplug B.
pub const NAMESPACE: &str = "spBv1.0";

/// A Sparkplug message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NBirth,
    NDeath,
    NData,
    NCmd,
    DBirth,
    DDeath,
    DData,
    DCmd,
}

impl Kind {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "NBIRTH" => Self::NBirth,
            "NDEATH" => Self::NDeath,
            "NDATA" => Self::NData,
            "NCMD" => Self::NCmd,
            "DBIRTH" => Self::DBirth,
            "DDEATH" => Self::DDeath,
            "DDATA" => Self::DData,
            "DCMD" => Self::DCmd,
            _ => return None,
        })
    }

    /// Whether the topic names a device.
    pub fn of_device(self) -> bool {
        matches!(self, Self::DBirth | Self::DDeath | Self::DData | Self::DCmd)
    }
}

/// Where a Sparkplug message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparkplugTopic {
    pub group: String,
    pub kind: Kind,
    pub edge_node: String,
    /// Present exactly for device messages.
    pub device: Option<String>,
}

/// What a topic under the namespace is.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Message(SparkplugTopic),
    /// A host application's STATE (ours or another's): nothing to store.
    State,
}

/// Whether `topic` (under `prefix`) is in the Sparkplug namespace at all.
pub fn is_sparkplug(topic: &str, prefix: &str) -> bool {
    topic
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix(NAMESPACE))
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Parses a topic in the namespace; the error says what is wrong with it.
pub fn parse(topic: &str, prefix: &str) -> Result<Parsed, &'static str> {
    let rest = topic
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix(NAMESPACE))
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or("not a Sparkplug B topic")?;
    let parts: Vec<&str> = rest.split('/').collect();
    if let ["STATE", _host] = parts.as_slice() {
        return Ok(Parsed::State);
    }
    let (group, kind, edge_node, device) = match parts.as_slice() {
        [group, kind, edge] => (*group, *kind, *edge, None),
        [group, kind, edge, device] => (*group, *kind, *edge, Some(*device)),
        _ => return Err("must be spBv1.0/{group_id}/{message_type}/{edge_node_id}[/{device_id}]"),
    };
    let kind = Kind::parse(kind).ok_or("unknown Sparkplug message type")?;
    if kind.of_device() != device.is_some() {
        return Err("device messages, and only they, name a device");
    }
    if [group, edge_node]
        .into_iter()
        .chain(device)
        .any(str::is_empty)
    {
        return Err("empty topic segment");
    }
    Ok(Parsed::Message(SparkplugTopic {
        group: group.to_owned(),
        kind,
        edge_node: edge_node.to_owned(),
        device: device.map(str::to_owned),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_of_the_namespace_parse_and_others_do_not() {
        let Ok(Parsed::Message(t)) = parse("p/spBv1.0/A/DDATA/edge-1/press-4", "p/") else {
            panic!("a device data topic");
        };
        assert_eq!(
            (t.group.as_str(), t.kind, t.edge_node.as_str()),
            ("A", Kind::DData, "edge-1")
        );
        assert_eq!(t.device.as_deref(), Some("press-4"));
        assert!(matches!(
            parse("spBv1.0/A/NBIRTH/edge-1", ""),
            Ok(Parsed::Message(SparkplugTopic {
                device: None,
                kind: Kind::NBirth,
                ..
            }))
        ));
        assert_eq!(parse("spBv1.0/STATE/plantline", ""), Ok(Parsed::State));
        for bad in [
            "spBv1.0/A/NDATA/edge/extra",
            "spBv1.0/A/DDATA/edge",
            "spBv1.0/A/XDATA/edge",
            "spBv1.0//NDATA/edge",
            "spBv1.0/A",
        ] {
            assert!(parse(bad, "").is_err(), "{bad}");
        }
        assert!(is_sparkplug("p/spBv1.0/A/NDATA/e", "p/"));
        assert!(!is_sparkplug("factory/A/machine/x/telemetry", ""));
        assert!(!is_sparkplug("spBv1.0x/A", ""));
    }
}
