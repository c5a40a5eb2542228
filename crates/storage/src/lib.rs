//! Plantline's tables and the read models cached beside them: the Diesel schema, one
//! repository module per table (machines, users, gateway clients, refresh tokens, settings,
//! audit, alerts), the machine registry and latest values as the write path reads them, and
//! how secrets are stored. Rows carry the domain's typed ids and enums. It must not know HTTP
//! or MQTT: callers turn its errors into answers; handlers never build SQL themselves.

pub mod alerts;
pub mod audit;
pub mod gateways;
pub mod latest;
pub mod machines;
pub mod refresh_tokens;
pub mod registry;
pub mod rollups;
pub mod schema;
pub mod secrets;
pub mod settings;
pub mod tickets;
pub mod users;
