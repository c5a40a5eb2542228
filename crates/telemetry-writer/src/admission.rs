//! Whether a machine may send: the one rule every entry point applies to the registry's
//! answer before anything is written.

use domain::{MachineId, MachineStatus};
use storage::registry::MachineInfo;

/// Why a machine's readings are not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not in the registry.
    UnknownMachine,
    /// Registered, but switched off (`inactive`); `maintenance` machines may send.
    InactiveMachine,
    /// The sender named a factory (an MQTT topic) other than the machine's own.
    FactoryMismatch {
        /// The factory the sender named.
        claimed: String,
        /// The factory the registry has.
        registered: String,
    },
}

impl Refusal {
    /// A stable machine-readable name (metrics labels, dead-letter reasons).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownMachine => "unknown_machine",
            Self::InactiveMachine => "inactive_machine",
            Self::FactoryMismatch { .. } => "factory_mismatch",
        }
    }

    /// In words, without naming the machine (the answer's path names it).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownMachine => "unknown machine: not in the registry",
            Self::InactiveMachine => "machine is inactive",
            Self::FactoryMismatch { .. } => "machine belongs to another factory",
        }
    }

    /// What to tell the sender about `machine`.
    pub fn describe(&self, machine: &MachineId) -> String {
        match self {
            Self::UnknownMachine => format!("machine {machine} is not in the registry"),
            Self::InactiveMachine => format!("machine {machine} is inactive"),
            Self::FactoryMismatch {
                claimed,
                registered,
            } => format!(
                "the topic says factory {claimed}; the registry has machine {machine} in factory {registered}"
            ),
        }
    }
}

/// Admits a machine by its registry entry; `claimed_factory` when the protocol names one.
pub fn admit<'a>(
    entry: Option<&'a MachineInfo>,
    claimed_factory: Option<&str>,
) -> Result<&'a MachineInfo, Refusal> {
    let info = entry.ok_or(Refusal::UnknownMachine)?;
    if info.status == MachineStatus::Inactive {
        return Err(Refusal::InactiveMachine);
    }
    if let Some(claimed) = claimed_factory
        && claimed != info.factory_id
    {
        return Err(Refusal::FactoryMismatch {
            claimed: claimed.to_owned(),
            registered: info.factory_id.clone(),
        });
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(status: MachineStatus, factory: &str) -> MachineInfo {
        MachineInfo {
            id: uuid::Uuid::nil(),
            name: "Mill".into(),
            location: "Hall 1".into(),
            sensor_type: "Vibration".into(),
            status,
            factory_id: factory.into(),
        }
    }

    #[test]
    fn unknown_inactive_and_foreign_machines_are_refused_maintenance_ones_admitted() {
        assert_eq!(admit(None, None), Err(Refusal::UnknownMachine));
        let off = machine(MachineStatus::Inactive, "A");
        assert_eq!(admit(Some(&off), None), Err(Refusal::InactiveMachine));
        let serviced = machine(MachineStatus::Maintenance, "A");
        assert!(admit(Some(&serviced), Some("A")).is_ok());
        let refusal = admit(Some(&serviced), Some("B")).unwrap_err();
        assert_eq!(refusal.code(), "factory_mismatch");
        assert!(
            refusal
                .describe(&MachineId::from(uuid::Uuid::nil()))
                .contains("factory A")
        );
    }
}
