//! End-to-end tests against real services; one binary, one module per capability.

mod demo_seed;
mod health;
mod influx_schema;
mod postgres_schema;
mod server;
