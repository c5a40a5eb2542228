//! Queries of query-api; each takes a connection so callers can compose transactions.

pub mod audit;
pub mod machines;
