//! Plantline's domain: the plant's vocabulary as types that can only hold valid values.
//!
//! Everything here is pure (no I/O), so the HTTP services, the MQTT bridge and the tools
//! share one definition of what a machine, a reading or a permission is.

pub mod alerts;
pub mod history;
pub mod ids;
pub mod ingest;
pub mod line_protocol;
pub mod machine;
pub mod mqtt;
pub mod rbac;
pub mod reading;
pub mod settings;
#[cfg(feature = "sparkplug")]
pub mod sparkplug;
#[cfg(feature = "sql")]
mod sql;
pub mod text;
pub mod user;

pub use ids::{FactoryId, MachineId, ParseIdError};
pub use machine::{MachineName, MachineStatus, ParseMachineError, SensorType};
pub use rbac::{Permission, PermissionSet, Role};
pub use user::{Email, GatewayId, NewPassword, UserId, Username};
