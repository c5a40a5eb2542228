//! Roles and permissions: the one place that says who may do what (ARCHITECTURE.md's table).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a role or permission name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseRbacError {
    /// Not one of the four roles.
    #[error("must be one of operator, supervisor, management, gateway")]
    UnknownRole,
    /// Not a known permission.
    #[error("unknown permission")]
    UnknownPermission,
}

/// Something a token may allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// List and read machines.
    ReadMachines,
    /// Read history and latest values.
    ReadSensorData,
    WriteSensorData,
    /// Register and edit machines.
    WriteMachines,
    DeleteMachines,
    /// Read system settings.
    ReadConfig,
    /// Change system settings.
    WriteConfig,
    /// List users and gateway clients.
    ReadUsers,
    /// Create and edit users and gateway clients.
    WriteUsers,
    /// Remove users and gateway clients.
    DeleteUsers,
    /// Read the audit log.
    ReadAudit,
    AcknowledgeAlerts,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Self; 12] = [
        Self::ReadMachines,
        Self::ReadSensorData,
        Self::WriteSensorData,
        Self::WriteMachines,
        Self::DeleteMachines,
        Self::ReadConfig,
        Self::WriteConfig,
        Self::ReadUsers,
        Self::WriteUsers,
        Self::DeleteUsers,
        Self::ReadAudit,
        Self::AcknowledgeAlerts,
    ];

    /// The name carried in tokens, e.g. `write:sensor_data`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ReadMachines => "read:machines",
            Self::ReadSensorData => "read:sensor_data",
            Self::WriteSensorData => "write:sensor_data",
            Self::WriteMachines => "write:machines",
            Self::DeleteMachines => "delete:machines",
            Self::ReadConfig => "read:config",
            Self::WriteConfig => "write:config",
            Self::ReadUsers => "read:users",
            Self::WriteUsers => "write:users",
            Self::DeleteUsers => "delete:users",
            Self::ReadAudit => "read:audit",
            Self::AcknowledgeAlerts => "ack:alerts",
        }
    }

    /// Administrative permissions fail closed: when revocations cannot be checked, requests
    /// needing them are refused (503) instead of trusting a possibly revoked token.
    pub fn is_administrative(&self) -> bool {
        matches!(
            self,
            Self::ReadConfig
                | Self::WriteConfig
                | Self::ReadUsers
                | Self::WriteUsers
                | Self::DeleteUsers
                | Self::ReadAudit
                | Self::DeleteMachines
        )
    }
}

impl FromStr for Permission {
    type Err = ParseRbacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or(ParseRbacError::UnknownPermission)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who someone is in the plant.
#[cfg_attr(feature = "sql", derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow), diesel(sql_type = diesel::sql_types::Text))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Watches machines and data.
    Operator,
    /// Operator, plus the machine registry.
    Supervisor,
    /// Everything: settings, users, audit.
    Management,
    /// A shop-floor gateway: may only send telemetry.
    Gateway,
}

impl Role {
    /// Every role.
    pub const ALL: [Self; 4] = [
        Self::Operator,
        Self::Supervisor,
        Self::Management,
        Self::Gateway,
    ];

    /// Roles a person can have (gateways are clients, not users).
    pub const HUMAN: [Self; 3] = [Self::Operator, Self::Supervisor, Self::Management];

    /// The stored and token spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Supervisor => "supervisor",
            Self::Management => "management",
            Self::Gateway => "gateway",
        }
    }

    /// What this role may do.
    pub fn permissions(&self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Self::Operator => &[ReadMachines, ReadSensorData, WriteSensorData],
            Self::Supervisor => &[
                ReadMachines,
                ReadSensorData,
                WriteSensorData,
                WriteMachines,
                AcknowledgeAlerts,
            ],
            Self::Management => &Permission::ALL,
            Self::Gateway => &[WriteSensorData],
        }
    }

    /// Whether this role has `permission`.
    pub fn allows(&self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }
}

impl FromStr for Role {
    type Err = ParseRbacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(ParseRbacError::UnknownRole)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of permissions as carried by a verified token; membership is a bit test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PermissionSet(u16);

impl PermissionSet {
    /// Whether `permission` is in the set.
    pub fn contains(&self, permission: Permission) -> bool {
        self.0 & (1 << permission as u16) != 0
    }

    /// Adds a permission.
    pub fn insert(&mut self, permission: Permission) {
        self.0 |= 1 << permission as u16;
    }

    /// The permissions, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = Permission> + '_ {
        Permission::ALL.into_iter().filter(|p| self.contains(*p))
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        let mut set = Self::default();
        for permission in iter {
            set.insert(permission);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    #[test]
    fn the_table_of_architecture_md() {
        let table: [(Permission, [bool; 4]); 12] = [
            // operator, supervisor, management, gateway
            (ReadMachines, [true, true, true, false]),
            (ReadSensorData, [true, true, true, false]),
            (WriteSensorData, [true, true, true, true]),
            (WriteMachines, [false, true, true, false]),
            (DeleteMachines, [false, false, true, false]),
            (ReadConfig, [false, false, true, false]),
            (WriteConfig, [false, false, true, false]),
            (ReadUsers, [false, false, true, false]),
            (WriteUsers, [false, false, true, false]),
            (DeleteUsers, [false, false, true, false]),
            (ReadAudit, [false, false, true, false]),
            (AcknowledgeAlerts, [false, true, true, false]),
        ];
        for (permission, allowed) in table {
            for (role, expected) in Role::ALL.into_iter().zip(allowed) {
                assert_eq!(role.allows(permission), expected, "{role} {permission}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse(), Ok(p));
        }
        for r in Role::ALL {
            assert_eq!(r.as_str().parse(), Ok(r));
        }
        assert_eq!("admin".parse::<Role>(), Err(ParseRbacError::UnknownRole));
    }

    #[test]
    fn permission_sets_hold_exactly_what_was_inserted() {
        let set: PermissionSet = Role::Supervisor.permissions().iter().copied().collect();
        assert!(set.contains(WriteMachines));
        assert!(!set.contains(DeleteMachines));
        assert_eq!(set.iter().count(), 5);
    }
}
