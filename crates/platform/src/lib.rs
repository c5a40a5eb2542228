//! Plumbing shared by every Plantline service: configuration, logging, the HTTP server
//! skeleton, the error body and the request boundary, token verification, health and metrics
//! endpoints, the clients for PostgreSQL, Redis and InfluxDB and the catalogue of Redis names.
//! It must not hold a protocol's business or a table's queries: those live in `domain`,
//! `storage` and `telemetry-writer`; signing and revoking tokens live in `auth`.

pub mod auth;
pub mod clients;
pub mod config;
pub mod error;
pub mod extract;
pub mod health;
pub mod influx;
pub mod metrics;
pub mod openapi;
pub mod pagination;
pub mod postgres;
pub mod redis;
pub mod redis_keys;
pub mod server;
pub mod shutdown;
pub mod telemetry;

pub use config::{Settings, load_settings};
pub use error::ApiError;
pub use extract::Json;
pub use server::{Application, ServiceName, ServiceParts, StartupError};
