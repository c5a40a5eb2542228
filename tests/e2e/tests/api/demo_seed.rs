use admin::demo::{DemoCredentials, MACHINES, seed};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use plantline_e2e::TestContext;
use secrecy::SecretString;
use storage::schema::{gateway_clients, machine_metadata, users};
use storage::secrets::verify_secret;

#[tokio::test]
async fn demo_seed_is_idempotent_and_credentials_work() {
    let ctx = TestContext::new().await;
    let pool = ctx.pg_pool();
    let dir = std::env::temp_dir().join(format!("plantline-seed-{}", uuid::Uuid::new_v4()));
    let env_file = dir.join("demo.env");

    let credentials = DemoCredentials::load_or_generate(&env_file).unwrap();
    credentials.write(&env_file).unwrap();
    assert_eq!(seed(&pool, &credentials).await.unwrap(), MACHINES.len());

    // A second run reuses the file's secrets and inserts nothing new.
    let again = DemoCredentials::load_or_generate(&env_file).unwrap();
    assert_eq!(
        again.get("OPERATOR_PASSWORD"),
        credentials.get("OPERATOR_PASSWORD")
    );
    assert_eq!(seed(&pool, &again).await.unwrap(), 0);

    let text = std::fs::read_to_string(&env_file).unwrap();
    for key in [
        "OPERATOR_USER",
        "OPERATOR_PASSWORD",
        "SUPERVISOR_USER",
        "SUPERVISOR_PASSWORD",
        "MANAGEMENT_USER",
        "MANAGEMENT_PASSWORD",
        "GATEWAY_CLIENT_ID",
        "GATEWAY_CLIENT_SECRET",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{key}="))),
            "{key} missing"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&env_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let mut conn = platform::postgres::connection(&pool).await.unwrap();
    let machines: i64 = machine_metadata::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(machines, 7);
    let (hash, role): (String, String) = users::table
        .filter(users::username.eq(credentials.get("MANAGEMENT_USER").unwrap()))
        .select((users::password_hash, users::role))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(role, "management");
    let password = SecretString::from(credentials.get("MANAGEMENT_PASSWORD").unwrap().to_owned());
    assert!(verify_secret(&password, &hash));
    assert!(!verify_secret(
        &SecretString::from("guess".to_owned()),
        &hash
    ));

    let secret_hash: String = gateway_clients::table
        .filter(gateway_clients::client_id.eq("demo-gateway"))
        .select(gateway_clients::secret_hash)
        .first(&mut conn)
        .await
        .unwrap();
    let secret = SecretString::from(credentials.get("GATEWAY_CLIENT_SECRET").unwrap().to_owned());
    assert!(verify_secret(&secret, &secret_hash));
    std::fs::remove_dir_all(dir).unwrap();
}
