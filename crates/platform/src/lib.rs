//! Plumbing shared by every Plantline service: configuration, logging, the HTTP server
//! skeleton, the error body and the request boundary, token verification, health and metrics
//! endpoints, and the clients for PostgreSQL, Redis and InfluxDB. It must not hold a
//! protocol's business; the registry read model, latest values, alerts and settings storage
//! still here are to move to the write path and a storage crate (ARCHITECTURE.md).

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod clients;
pub mod config;
pub mod error;
pub mod extract;
pub mod health;
pub mod influx;
pub mod latest;
pub mod metrics;
pub mod openapi;
pub mod password;
pub mod postgres;
pub mod redis;
pub mod registry;
pub mod schema;
pub mod server;
pub mod settings_store;
pub mod shutdown;
pub mod telemetry;

pub use config::{Settings, load_settings};
pub use error::ApiError;
pub use extract::Json;
pub use server::{Application, ServiceName, ServiceParts, StartupError};
