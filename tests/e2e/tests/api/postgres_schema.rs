use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use plantline_e2e::TestContext;
use storage::schema::{audit_log, machine_metadata, system_config, users};
use uuid::Uuid;

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = machine_metadata)]
struct MachineRow {
    id: Uuid,
    name: String,
    location: String,
    sensor_type: String,
    status: String,
    factory_id: String,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

async fn insert_machine(
    conn: &mut platform::postgres::PgConn,
    name: &str,
    status: &str,
) -> QueryResult<Uuid> {
    diesel::insert_into(machine_metadata::table)
        .values((
            machine_metadata::name.eq(name),
            machine_metadata::location.eq("Hall 9"),
            machine_metadata::sensor_type.eq("multi"),
            machine_metadata::status.eq(status),
            machine_metadata::factory_id.eq("A"),
        ))
        .returning(machine_metadata::id)
        .get_result(conn)
        .await
}

#[tokio::test]
async fn a_machine_round_trips_through_the_pool() {
    let ctx = TestContext::new().await;
    let pool = ctx.pg_pool();
    let mut conn = platform::postgres::connection(&pool).await.unwrap();

    let id = insert_machine(&mut conn, "Press 9", "maintenance")
        .await
        .unwrap();
    let row: MachineRow = machine_metadata::table
        .find(id)
        .select(MachineRow::as_select())
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(row.id, id);
    assert_eq!(row.name, "Press 9");
    assert_eq!(row.location, "Hall 9");
    assert_eq!(row.sensor_type, "multi");
    assert_eq!(row.status, "maintenance");
    assert_eq!(row.factory_id, "A");
    assert_eq!(row.version, 1);
    assert_eq!(row.created_at, row.updated_at);
}

#[tokio::test]
async fn constraints_guard_status_sensor_type_and_names() {
    let ctx = TestContext::new().await;
    let pool = ctx.pg_pool();
    let mut conn = platform::postgres::connection(&pool).await.unwrap();

    let err = insert_machine(&mut conn, "Mill X", "running")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("check constraint"), "{err}");

    insert_machine(&mut conn, "Mill X", "active").await.unwrap();
    // The sensor type is the plant's free label, but never blank or with control characters.
    for (label, ok) in [
        ("Flow meter", true),
        ("   ", false),
        ("Vib\u{7}ration", false),
    ] {
        let inserted = diesel::insert_into(machine_metadata::table)
            .values((
                machine_metadata::name.eq(format!("Sensor {}", label.len())),
                machine_metadata::location.eq("Hall 9"),
                machine_metadata::sensor_type.eq(label),
            ))
            .execute(&mut conn)
            .await;
        assert_eq!(inserted.is_ok(), ok, "{label:?}: {inserted:?}");
    }
    let err = insert_machine(&mut conn, "mill x", "active")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("uq_machine_metadata_factory_name"),
        "{err}"
    );

    let err = diesel::insert_into(users::table)
        .values((
            users::username.eq("eve"),
            users::password_hash.eq("x"),
            users::role.eq("root"),
        ))
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("check constraint"), "{err}");
}

#[tokio::test]
async fn updated_at_moves_on_update() {
    let ctx = TestContext::new().await;
    let pool = ctx.pg_pool();
    let mut conn = platform::postgres::connection(&pool).await.unwrap();
    let id = insert_machine(&mut conn, "Lathe 3", "active")
        .await
        .unwrap();

    // now() is the transaction start, so two statements in autocommit differ.
    let (created, updated): (DateTime<Utc>, DateTime<Utc>) =
        diesel::update(machine_metadata::table.find(id))
            .set(machine_metadata::status.eq("error"))
            .returning((machine_metadata::created_at, machine_metadata::updated_at))
            .get_result(&mut conn)
            .await
            .unwrap();
    assert!(updated > created, "{created} !< {updated}");
}

#[tokio::test]
async fn config_and_audit_tables_accept_their_rows() {
    let ctx = TestContext::new().await;
    let pool = ctx.pg_pool();
    let mut conn = platform::postgres::connection(&pool).await.unwrap();

    diesel::insert_into(system_config::table)
        .values((
            system_config::name.eq("max_temperature_threshold"),
            system_config::value.eq(serde_json::json!(85.0)),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    let (value, version): (serde_json::Value, i64) = system_config::table
        .find("max_temperature_threshold")
        .select((system_config::value, system_config::version))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(value, serde_json::json!(85.0));
    assert_eq!(version, 1);

    let id: i64 = diesel::insert_into(audit_log::table)
        .values((
            audit_log::actor_name.eq("manager"),
            audit_log::action.eq("config.update"),
            audit_log::resource_type.eq("config"),
            audit_log::after.eq(serde_json::json!({"max_temperature_threshold": 85.0})),
        ))
        .returning(audit_log::id)
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(id > 0);
}

#[tokio::test]
async fn check_schema_passes_when_migrated_and_names_what_is_pending() {
    let ctx = TestContext::new().await;
    let check = || {
        std::process::Command::new(plantline_e2e::net::binary("plantline-admin"))
            .arg("check-schema")
            .env_clear()
            .envs(ctx.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run plantline-admin check-schema")
    };
    assert!(check().status.success(), "a migrated database passes");

    // Forget that the newest migration ran: it is pending again.
    let mut conn = platform::postgres::connection(&ctx.pg_pool())
        .await
        .unwrap();
    diesel::sql_query(
        "DELETE FROM __diesel_schema_migrations WHERE version = (SELECT max(version) FROM __diesel_schema_migrations)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let output = check();
    assert_eq!(output.status.code(), Some(1));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("1 pending"), "{said}");
}
