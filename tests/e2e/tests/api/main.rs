//! End-to-end tests against real services; one binary, one module per capability.

mod alerts;
mod auth_forgery;
mod auth_tokens;
mod cli;
mod dashboard;
mod demo_seed;
mod fuzz_api;
mod health;
mod history;
mod hostile;
mod influx_compat;
mod influx_roundtrip;
mod influx_schema;
mod ingest;
mod latest;
mod machines;
mod mqtt_bridge;
mod node_red;
mod openapi;
mod postgres_schema;
mod rbac;
mod seed_conformance;
mod server;
mod stream;
mod traces;
mod users_admin;
