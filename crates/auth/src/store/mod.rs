//! Queries. Every function takes a connection, so callers can compose them in a transaction.

pub mod gateways;
pub mod refresh;
pub mod users;
