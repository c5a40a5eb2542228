//! The machine registry (`machine_metadata`).

use crate::schema::machine_metadata;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::MachineStatus;
use serde::Serialize;
use uuid::Uuid;

/// A registered machine, as the API shows it.
#[derive(Debug, Clone, Serialize, Queryable, Selectable)]
#[diesel(table_name = machine_metadata)]
pub struct Machine {
    pub id: Uuid,
    /// Display name, unique per factory.
    pub name: String,
    /// Where it stands.
    pub location: String,
    pub sensor_type: String,
    pub status: MachineStatus,
    pub factory_id: String,
    /// Grows with every change; the ETag.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Machine {
    /// The entity tag of this version.
    pub fn etag(&self) -> String {
        format!("\"v{}\"", self.version)
    }
}

/// A machine as answers show it: its columns, and its id once more as `machine_id`, the
/// name the seed's documents and the telemetry use.
#[derive(Serialize)]
pub struct MachineView<'a> {
    machine_id: Uuid,
    #[serde(flatten)]
    machine: &'a Machine,
}

impl<'a> From<&'a Machine> for MachineView<'a> {
    fn from(machine: &'a Machine) -> Self {
        Self {
            machine_id: machine.id,
            machine,
        }
    }
}

/// Filters of the list endpoint (already validated).
#[derive(Debug, Default)]
pub struct Filter {
    pub location: Option<String>,
    pub status: Option<MachineStatus>,
    /// Sensor label, any case.
    pub sensor_type: Option<String>,
    pub factory_id: Option<String>,
}

impl Filter {
    /// Checks the filter parameters of the list and fleet endpoints, reporting each problem.
    pub fn parse(
        location: Option<String>,
        status: Option<String>,
        sensor_type: Option<String>,
        factory_id: Option<String>,
        errors: &mut Vec<platform::error::FieldError>,
    ) -> Self {
        use platform::error::FieldError;
        let status = status.and_then(|value| match value.parse::<MachineStatus>() {
            Ok(status) => Some(status),
            Err(_) => {
                errors.push(
                    FieldError::parameter(
                        "status",
                        "must be one of active, inactive, maintenance, error",
                    )
                    .with_value(value),
                );
                None
            }
        });
        if let Some(value) = &sensor_type
            && let Err(err) = domain::SensorType::parse(value)
        {
            errors.push(
                FieldError::parameter("sensor_type", err.to_string()).with_value(value.as_str()),
            );
        }
        Self {
            location,
            status,
            sensor_type,
            factory_id,
        }
    }
}

diesel::define_sql_function!(fn lower(text: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// A page of machines by factory and name, and the total matching.
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &Filter,
    limit: i64,
    offset: i64,
) -> QueryResult<(Vec<Machine>, i64)> {
    let filtered = || {
        let mut query = machine_metadata::table.into_boxed();
        if let Some(v) = &filter.location {
            query = query.filter(machine_metadata::location.eq(v.clone()));
        }
        if let Some(v) = &filter.status {
            query = query.filter(machine_metadata::status.eq(*v));
        }
        if let Some(v) = &filter.sensor_type {
            // PostgreSQL folds both sides, so the comparison is one collation's, not two.
            query =
                query.filter(lower(machine_metadata::sensor_type).eq(lower(v.trim().to_owned())));
        }
        if let Some(v) = &filter.factory_id {
            query = query.filter(machine_metadata::factory_id.eq(v.clone()));
        }
        query
    };
    let page = filtered()
        .order((
            machine_metadata::factory_id.asc(),
            machine_metadata::name.asc(),
        ))
        .limit(limit)
        .offset(offset)
        .select(Machine::as_select())
        .load(conn)
        .await?;
    let total = filtered().count().get_result(conn).await?;
    Ok((page, total))
}

/// Lookup by id.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Machine>> {
    machine_metadata::table
        .find(id)
        .select(Machine::as_select())
        .first(conn)
        .await
        .optional()
}

/// The id of the machine named `name` in `factory` (names are unique within a factory).
pub async fn id_by_name(
    conn: &mut AsyncPgConnection,
    factory: &str,
    name: &str,
) -> QueryResult<Option<Uuid>> {
    machine_metadata::table
        .filter(machine_metadata::factory_id.eq(factory))
        .filter(machine_metadata::name.eq(name))
        .select(machine_metadata::id)
        .first(conn)
        .await
        .optional()
}

/// A new machine's columns.
#[derive(Insertable)]
#[diesel(table_name = machine_metadata)]
pub struct NewMachine {
    pub name: String,
    pub location: String,
    pub sensor_type: String,
    pub status: MachineStatus,
    pub factory_id: String,
}

/// Inserts a machine.
pub async fn insert(conn: &mut AsyncPgConnection, machine: NewMachine) -> QueryResult<Machine> {
    diesel::insert_into(machine_metadata::table)
        .values(machine)
        .returning(Machine::as_returning())
        .get_result(conn)
        .await
}

/// Changes to a machine; `None` leaves a column alone.
#[derive(AsChangeset, Default)]
#[diesel(table_name = machine_metadata)]
pub struct MachineChanges {
    pub name: Option<String>,
    pub location: Option<String>,
    pub sensor_type: Option<String>,
    pub status: Option<MachineStatus>,
    pub factory_id: Option<String>,
}

/// Applies changes if the stored version is still `expected_version`; `None` when it moved on.
pub async fn update_if_version(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    expected_version: i64,
    changes: MachineChanges,
) -> QueryResult<Option<Machine>> {
    diesel::update(
        machine_metadata::table
            .filter(machine_metadata::id.eq(id))
            .filter(machine_metadata::version.eq(expected_version)),
    )
    .set((
        changes,
        machine_metadata::version.eq(machine_metadata::version + 1),
    ))
    .returning(Machine::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Deletes a machine.
pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<usize> {
    diesel::delete(machine_metadata::table.find(id))
        .execute(conn)
        .await
}
