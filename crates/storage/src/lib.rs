//! Plantline's tables and the read models cached beside them: the Diesel schema, one
//! repository module per table (machines, users, gateway clients, refresh tokens, settings,
//! audit, alerts), the machine registry and latest values as the write path reads them, and
//! how secrets are stored and checked. Rows carry the domain's typed ids and enums. It must
//! not know MQTT, and HTTP only where a service's answer is decided here: the credential
//! checks (`credentials`, `hashing`, `throttle`) answer with platform's `ApiError` (401, 429,
//! 503 with `Retry-After`) because `auth` and ingest-api share them whole. Handlers never
//! build SQL themselves.

pub mod alerts;
pub mod audit;
pub mod credentials;
pub mod gateways;
pub mod hashing;
pub mod latest;
pub mod machines;
pub mod presence;
pub mod refresh_tokens;
pub mod registry;
pub mod rollups;
pub mod schema;
pub mod secrets;
pub mod settings;
pub mod throttle;
pub mod tickets;
pub mod users;
pub mod verified;
