//! The machine a Sparkplug device (or edge node) id stands for: a machine id as it is, else
//! the machine registered under that name in the factory. Asked of PostgreSQL once per name and kept a minute (an
//! unknown name 30 s, as the registry keeps unknown ids), so a device's data costs no query.

use domain::MachineId;
use platform::postgres::{DbError, PgPool, connection};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const KNOWN_FOR: Duration = Duration::from_secs(60);
const UNKNOWN_FOR: Duration = Duration::from_secs(30);
/// Names kept at most; beyond, the expired ones are dropped (then all, if need be).
const KEPT: usize = 10_000;

pub struct MachineNames {
    pg: PgPool,
    known: HashMap<(String, String), (Option<MachineId>, Instant)>,
}

impl MachineNames {
    pub fn new(pg: PgPool) -> Self {
        Self {
            pg,
            known: HashMap::new(),
        }
    }

    /// The machine `name` stands for in `factory` (a machine id, or a registered name), if
    /// any. Only names cost a lookup.
    pub async fn resolve(
        &mut self,
        factory: &str,
        name: &str,
    ) -> Result<Option<MachineId>, DbError> {
        if let Ok(id) = name.parse::<MachineId>() {
            return Ok(Some(id));
        }
        let key = (factory.to_owned(), name.to_owned());
        if let Some((found, at)) = self.known.get(&key) {
            let keep = if found.is_some() {
                KNOWN_FOR
            } else {
                UNKNOWN_FOR
            };
            if at.elapsed() < keep {
                return Ok(*found);
            }
        }
        let mut conn = connection(&self.pg).await?;
        let found = storage::machines::id_by_name(&mut conn, factory, name)
            .await
            .map_err(DbError::Query)?
            .map(MachineId::from);
        if self.known.len() >= KEPT {
            self.known.retain(|_, (_, at)| at.elapsed() < KNOWN_FOR);
            if self.known.len() >= KEPT {
                self.known.clear();
            }
        }
        self.known.insert(key, (found, Instant::now()));
        Ok(found)
    }
}
