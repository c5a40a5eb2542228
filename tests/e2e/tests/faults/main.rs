//! The fault-injection suite (`make faults`; also part of `make test`): each scenario runs the
//! four services as real processes behind nginx, takes one backing service away through
//! `deploy/local/backing.sh` (its own instance, own port and folder), and proves what
//! Plantline promises — acknowledged data is never lost, a failing dependency only degrades
//! it — with counts computed from what the load generator got acknowledged and what
//! InfluxDB holds.

mod backlog;
mod broker;
mod disk;
mod influx;
mod postgres;
mod redis;
mod refusals;
mod shutdown;
mod silent;
mod slow_influx;
mod spool;
mod support;
