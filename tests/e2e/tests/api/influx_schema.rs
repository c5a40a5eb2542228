use plantline_e2e::TestContext;

#[tokio::test]
async fn influx_setup_is_idempotent_and_complete() {
    let ctx = TestContext::new().await;
    // TestContext already ran the setup once; a fresh database shows the first run's work.
    let influx = ctx
        .influx()
        .with_database(&format!("{}_again", ctx.influx().database()))
        .unwrap();
    let first = influx.ensure_schema().await.unwrap();
    assert!(
        first.created.iter().any(|c| c == "retention policy hourly"),
        "{first:?}"
    );
    assert!(
        first
            .created
            .iter()
            .any(|c| c.starts_with("continuous query cq_sensor_readings_daily"))
    );

    let second = influx.ensure_schema().await.unwrap();
    assert!(second.is_unchanged(), "second run changed {second:?}");

    let policies = influx.retention_policies().await.unwrap();
    let find = |name: &str| policies.iter().find(|p| p.name == name).unwrap().clone();
    assert_eq!(find("raw").duration_hours, 52 * 7 * 24);
    assert!(find("raw").default);
    assert_eq!(find("hourly").duration_hours, 104 * 7 * 24);
    assert_eq!(find("daily").duration_hours, 260 * 7 * 24);
    assert!(!find("daily").default);

    let mut cqs = influx.continuous_query_names().await.unwrap();
    cqs.sort();
    assert_eq!(
        cqs,
        [
            "cq_sensor_readings_daily_v1",
            "cq_sensor_readings_hourly_v1"
        ]
    );
    influx.drop_database().await.unwrap();
}

#[tokio::test]
async fn influx_setup_repairs_a_drifted_retention_policy() {
    let ctx = TestContext::new().await;
    let influx = ctx.influx();
    let db = influx.database().to_owned();
    influx
        .query(&format!(
            "ALTER RETENTION POLICY \"hourly\" ON \"{db}\" DURATION 1w"
        ))
        .await
        .unwrap();
    let report = influx.ensure_schema().await.unwrap();
    assert_eq!(report.altered, ["retention policy hourly"]);
    let hourly = influx
        .retention_policies()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == "hourly")
        .unwrap();
    assert_eq!(hourly.duration_hours, 104 * 7 * 24);
}

#[tokio::test]
async fn rollups_compute_exact_daily_means_from_hourly_sums() {
    let ctx = TestContext::new().await;
    let influx = ctx.influx();
    let db = influx.database().to_owned();
    // Two hours of one day with different counts: a mean of hourly means would be 15,
    // the exact daily mean is (10*3 + 20*1) / 4 = 12.5.
    // A whole UTC day two days ago: inside the raw policy, outside the CQs' own windows.
    let midnight = (chrono::Utc::now() - chrono::Duration::days(2))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let next_midnight = midnight + chrono::Duration::days(1);
    let day = midnight.timestamp_nanos_opt().unwrap();
    let hour = 3_600_000_000_000_i64;
    let lines = [
        (day + 60_000_000_000, 10.0),
        (day + 120_000_000_000, 10.0),
        (day + 180_000_000_000, 10.0),
        (day + hour + 60_000_000_000, 20.0),
    ]
    .iter()
    .map(|(ts, t)| format!("sensor_readings,machine_id=m1,factory_id=A temperature={t} {ts}"))
    .collect::<Vec<_>>()
    .join("\n");
    influx.write_lines(lines, None).await.unwrap();

    // The continuous queries only look at "now"; the backfill runs the same statements.
    influx
        .backfill_rollups(midnight, next_midnight)
        .await
        .unwrap();
    let answer = influx
        .query(&format!(
            "SELECT temperature, temperature_min, temperature_max, temperature_count FROM \"{db}\".\"daily\".\"sensor_readings\""
        ))
        .await
        .unwrap();
    let row = &answer[0][0].values[0];
    let number = |i: usize| row[i].as_f64().unwrap();
    assert_eq!(number(1), 12.5, "exact daily mean");
    assert_eq!(number(2), 10.0, "daily min");
    assert_eq!(number(3), 20.0, "daily max");
    assert_eq!(number(4), 4.0, "daily count");
}
