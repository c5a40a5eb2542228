//! Test harness: every test gets its own PostgreSQL database (cloned from a migrated
//! template), its own InfluxDB database, Redis key prefix and MQTT topic prefix, and starts
//! real services in-process on random ports. Everything is removed again on drop.

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use platform::influx::InfluxClient;
use platform::redis::RedisClient;
use platform::{Application, ServiceName, Settings};
use secrecy::SecretString;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub mod backing;
pub mod front;
pub mod load;
pub mod mqtt;
pub mod net;
pub mod plant;

/// Where the tests find the backing services (the ones `make services` starts).
pub struct Backends {
    /// Maintenance connection URL (database `postgres`), allowed to create databases.
    pub postgres_admin_url: String,
    /// Base URL of the Postgres server, without database.
    pub postgres_base_url: String,
    /// InfluxDB base URL.
    pub influx_url: String,
    /// Redis URL.
    pub redis_url: String,
    /// MQTT broker URL.
    pub mqtt_url: String,
}

impl Backends {
    /// From `PLANTLINE_TEST_*` variables, defaulting to the local services.
    pub fn from_env() -> Self {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        let postgres_base_url = var(
            "PLANTLINE_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432",
        );
        Self {
            postgres_admin_url: format!("{postgres_base_url}/postgres"),
            postgres_base_url,
            influx_url: var("PLANTLINE_TEST_INFLUX_URL", "http://127.0.0.1:8086"),
            redis_url: var("PLANTLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
            mqtt_url: var("PLANTLINE_TEST_MQTT_URL", "tcp://127.0.0.1:1884"),
        }
    }

    /// These, with PostgreSQL at `base_url` (no database).
    pub fn with_postgres(self, base_url: String) -> Self {
        Self {
            postgres_admin_url: format!("{base_url}/postgres"),
            postgres_base_url: base_url,
            ..self
        }
    }
}

/// Runs a future to completion on a fresh runtime in another thread: lets `Drop` do async
/// cleanup from inside a test's runtime.
fn run_detached<F>(work: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let joined = std::thread::spawn(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(work),
            Err(err) => eprintln!("cleanup runtime: {err}"),
        }
    })
    .join();
    if joined.is_err() {
        eprintln!("cleanup thread panicked");
    }
}

/// The repository's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn migrations_dir() -> PathBuf {
    workspace_root().join("migrations")
}

/// A fingerprint of the migrations, so a changed migration gets a fresh template.
fn migrations_fingerprint() -> String {
    fn walk(dir: &Path, hasher: &mut std::collections::hash_map::DefaultHasher) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.sort();
        for path in entries {
            path.file_name().hash(hasher);
            if path.is_dir() {
                walk(&path, hasher);
            } else if let Ok(bytes) = std::fs::read(&path) {
                bytes.hash(hasher);
            }
        }
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    walk(&migrations_dir(), &mut hasher);
    format!("{:016x}", hasher.finish())
}

/// A migrated database of this test's own, dropped (forcefully) when this value is dropped.
pub struct TestDatabase {
    /// Database name.
    pub name: String,
    /// Connection URL for it.
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Clones the migrated template, creating the template first if this is the first test
    /// to run since the migrations changed. Safe across parallel test processes.
    pub async fn create(backends: &Backends) -> Self {
        let template = format!("plantline_tmpl_{}", migrations_fingerprint());
        let mut admin = AsyncPgConnection::establish(&backends.postgres_admin_url)
            .await
            .expect("connect to Postgres as admin (is `make services` up?)");
        diesel::sql_query("SELECT pg_advisory_lock(727002)")
            .execute(&mut admin)
            .await
            .expect("template lock");
        let exists = diesel::sql_query(format!(
            "SELECT 1 FROM pg_database WHERE datname = '{template}'"
        ))
        .execute(&mut admin)
        .await
        .expect("look up template")
            > 0;
        if !exists {
            let building = format!("{template}_building");
            diesel::sql_query(format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .expect("drop half-built template");
            diesel::sql_query(format!("CREATE DATABASE {building}"))
                .execute(&mut admin)
                .await
                .expect("create template");
            let url = SecretString::from(format!("{}/{building}", backends.postgres_base_url));
            platform::postgres::run_migrations(&url)
                .await
                .expect("migrate template");
            // Renamed only once complete, so a crash mid-migration never leaves a bad template.
            diesel::sql_query(format!("ALTER DATABASE {building} RENAME TO {template}"))
                .execute(&mut admin)
                .await
                .expect("publish template");
        }
        diesel::sql_query("SELECT pg_advisory_unlock(727002)")
            .execute(&mut admin)
            .await
            .expect("template unlock");

        let name = format!("plantline_test_{}", uuid::Uuid::new_v4().simple());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Fails while the template still has a (closing) connection: retry briefly.
            match diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE {template}"))
                .execute(&mut admin)
                .await
            {
                Ok(_) => break,
                Err(err) if Instant::now() < deadline => {
                    eprintln!("create test database (retrying): {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => panic!("create test database {name}: {err}"),
            }
        }
        Self {
            url: format!("{}/{name}", backends.postgres_base_url),
            name,
            admin_url: backends.postgres_admin_url.clone(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        run_detached(async move {
            match AsyncPgConnection::establish(&admin_url).await {
                Ok(mut admin) => {
                    if let Err(err) =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut admin)
                            .await
                    {
                        eprintln!("drop test database {name}: {err}");
                    }
                }
                Err(err) => eprintln!("drop test database {name}: {err}"),
            }
        });
    }
}

/// Everything one test owns, and settings that point every service at it.
pub struct TestContext {
    /// Settings for services under test: this test's database, Influx database, prefixes,
    /// and port 0.
    pub settings: Settings,
    /// The Postgres database.
    pub db: TestDatabase,
    /// MQTT topic prefix (`plantline_test/<id>/`).
    pub topic_prefix: String,
    /// This test's token key pair.
    pub key_dir: PathBuf,
    /// The bridge's spool folder (each extra bridge takes a sibling, see `bridge_settings`).
    pub spool_dir: PathBuf,
    /// The environment equivalent of `settings`, for services started as processes.
    pub env: Vec<(String, String)>,
    cleaned: bool,
}

impl TestContext {
    /// A fresh database, Influx database (with Plantline's schema) and Redis prefix.
    pub async fn new() -> Self {
        Self::with_backends(Backends::from_env()).await
    }

    /// Like [`new`](Self::new), on these backing services (a fault test's own).
    pub async fn with_backends(backends: Backends) -> Self {
        let db = TestDatabase::create(&backends).await;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let key_dir = std::env::temp_dir().join(format!("plantline-test-keys-{id}"));
        let spool_dir = std::env::temp_dir().join(format!("plantline-test-spool-{id}"));
        admin::keys::ensure_key_pair(&key_dir).expect("test key pair");
        let vars = [
            (
                "PLANTLINE_AUTH__SIGNING_KEY_FILE",
                key_dir
                    .join(admin::keys::PRIVATE_KEY_FILE)
                    .display()
                    .to_string(),
            ),
            (
                "PLANTLINE_AUTH__PUBLIC_KEY_FILES",
                key_dir
                    .join(admin::keys::PUBLIC_KEY_FILE)
                    .display()
                    .to_string(),
            ),
            // Fast revocation polling keeps propagation tests short.
            ("PLANTLINE_AUTH__REVOCATION_POLL_MS", "100".to_owned()),
            ("PLANTLINE_HTTP__PORT", "0".to_owned()),
            ("PLANTLINE_HTTP__WORKERS", "2".to_owned()),
            ("PLANTLINE_HTTP__SHUTDOWN_TIMEOUT_SECS", "5".to_owned()),
            ("PLANTLINE_LOG__LEVEL", "warn".to_owned()),
            ("PLANTLINE_POSTGRES__URL", db.url.clone()),
            ("PLANTLINE_POSTGRES__POOL_SIZE", "4".to_owned()),
            ("PLANTLINE_REDIS__URL", backends.redis_url.clone()),
            (
                "PLANTLINE_REDIS__KEY_PREFIX",
                format!("plantline_test:{id}:"),
            ),
            ("PLANTLINE_INFLUX__URL", backends.influx_url.clone()),
            ("PLANTLINE_INFLUX__DATABASE", format!("plantline_test_{id}")),
            ("PLANTLINE_MQTT__URL", backends.mqtt_url.clone()),
            ("PLANTLINE_MQTT__CLIENT_ID", format!("plantline-test-{id}")),
            (
                "PLANTLINE_MQTT__TOPIC_PREFIX",
                format!("plantline_test/{id}/"),
            ),
            (
                "PLANTLINE_BRIDGE__SPOOL_DIR",
                spool_dir.join("1").display().to_string(),
            ),
            // Small batches keep the bridge's tests quick to observe.
            ("PLANTLINE_BRIDGE__BATCH_LINGER_MS", "10".to_owned()),
            (
                "PLANTLINE_DASHBOARD__DIR",
                workspace_root()
                    .join("crates/query-api/dashboard/dist")
                    .display()
                    .to_string(),
            ),
        ];
        let env: Vec<(String, String)> = vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let settings = platform::config::load_settings_from(env.clone()).expect("test settings");
        InfluxClient::new(&settings.influx)
            .expect("influx client")
            .ensure_schema()
            .await
            .expect("create test Influx database (is `make services` up?)");
        Self {
            topic_prefix: settings.mqtt.topic_prefix.clone(),
            settings,
            db,
            key_dir,
            spool_dir,
            env,
            cleaned: false,
        }
    }

    /// A pool on this test's database.
    pub fn pg_pool(&self) -> platform::postgres::PgPool {
        platform::postgres::build_pool(&self.settings.postgres).expect("test pool")
    }

    /// A Redis client with this test's prefix.
    pub fn redis(&self) -> RedisClient {
        RedisClient::new(&self.settings.redis).expect("test redis")
    }

    /// How many subscribers this test's live-readings channel has (query-api's hub while
    /// anyone watches); `None` while Redis does not answer.
    pub async fn readings_subscribers(&self) -> Option<i64> {
        let redis = self.redis();
        let channel = redis.key(platform::redis_keys::LIVE_READINGS_CHANNEL);
        let (_, count): (String, i64) = redis
            .query(
                deadpool_redis::redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(&channel),
            )
            .await
            .ok()?;
        Some(count)
    }

    /// An InfluxDB client on this test's database.
    pub fn influx(&self) -> InfluxClient {
        InfluxClient::new(&self.settings.influx).expect("test influx")
    }

    /// Settings for bridge number `n` (1, 2, …): its own client id and spool folder.
    pub fn bridge_settings(&self, n: u32) -> Settings {
        let mut settings = self.settings.clone();
        settings.mqtt.client_id = format!("{}-{n}", self.settings.mqtt.client_id);
        settings.bridge.spool_dir = self.spool_dir.join(n.to_string()).display().to_string();
        settings
    }

    /// `{prefix}factory/{factory}/machine/{machine}/telemetry`.
    pub fn telemetry_topic(&self, factory: &str, machine: &uuid::Uuid) -> String {
        format!(
            "{}factory/{factory}/machine/{machine}/telemetry",
            self.topic_prefix
        )
    }

    /// Starts `service` in-process on a random port with these settings.
    pub async fn spawn(&self, service: ServiceName) -> TestApp {
        self.spawn_with(service, self.settings.clone()).await
    }

    /// Starts `service` with modified settings (e.g. a dependency pointed at a closed port).
    pub async fn spawn_with(&self, service: ServiceName, settings: Settings) -> TestApp {
        let app = match service {
            ServiceName::Auth => auth::build(&settings).await,
            ServiceName::IngestApi => ingest_api::build(&settings).await,
            ServiceName::QueryApi => query_api::build(&settings).await,
            ServiceName::MqttBridge => mqtt_bridge::build(&settings).await,
        }
        .expect("service builds");
        TestApp::start(app)
    }
}

impl Drop for TestContext {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        self.cleaned = true;
        let _ = std::fs::remove_dir_all(&self.key_dir);
        let _ = std::fs::remove_dir_all(&self.spool_dir);
        let influx = self.influx();
        let redis = self.redis();
        run_detached(async move {
            if let Err(err) = influx.drop_database().await {
                eprintln!("drop test Influx database: {err}");
            }
            if let Err(err) = redis.delete_all_prefixed().await {
                eprintln!("delete test Redis keys: {err}");
            }
        });
    }
}

/// A running service; stopped when dropped.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The bound port.
    pub port: u16,
    /// A client for calling it.
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// Runs a built application in the background.
    pub fn start(app: Application) -> Self {
        let port = app.port();
        let shutdown = app.shutdown_token();
        let handle = tokio::spawn(app.run_until_stopped());
        Self {
            address: format!("http://127.0.0.1:{port}"),
            port,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            shutdown,
            handle: Some(handle),
        }
    }

    /// `GET {address}{path}`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request reaches the service")
    }

    /// The value of metric `name` on the first series whose labels contain `label` (e.g.
    /// `outcome="stored"`); 0 when there is none.
    pub async fn metric(&self, name: &str, label: &str) -> f64 {
        let text = self
            .get("/metrics")
            .await
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0.0)
    }

    /// Requests a graceful stop and waits until the service has drained.
    pub async fn stop(mut self) -> std::io::Result<()> {
        self.shutdown.cancel();
        match self.handle.take() {
            Some(handle) => handle.await.expect("service task"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP port on loopback with nothing listening (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind probe port");
    listener.local_addr().expect("probe port").port()
}

/// A user created directly in a test's database.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// Id.
    pub id: uuid::Uuid,
    /// Login name.
    pub username: String,
    /// Plain password.
    pub password: String,
}

/// A gateway client created directly in a test's database.
#[derive(Debug, Clone)]
pub struct TestGateway {
    /// Id (the token's subject).
    pub id: uuid::Uuid,
    /// Client id.
    pub client_id: String,
    /// Plain secret.
    pub secret: String,
}

impl TestContext {
    /// Inserts an active user with `role` and a random password.
    pub async fn create_user(&self, role: domain::Role) -> TestUser {
        use diesel::ExpressionMethods;
        use storage::schema::users;
        let username = format!(
            "{}-{}",
            role.as_str(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
        let hash = storage::secrets::hash_secret(&SecretString::from(password.clone()))
            .expect("hash test password");
        let pool = self.pg_pool();
        let mut conn = platform::postgres::connection(&pool)
            .await
            .expect("test connection");
        let id = diesel::insert_into(users::table)
            .values((
                users::username.eq(&username),
                users::password_hash.eq(hash),
                users::role.eq(role.as_str()),
            ))
            .returning(users::id)
            .get_result(&mut conn)
            .await
            .expect("insert test user");
        TestUser {
            id,
            username,
            password,
        }
    }

    /// Inserts an active gateway client with a random secret.
    pub async fn create_gateway(&self) -> TestGateway {
        use diesel::ExpressionMethods;
        use storage::schema::gateway_clients;
        let client_id = format!("gw-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let secret = format!("secret-{}", uuid::Uuid::new_v4().simple());
        let hash = storage::secrets::hash_secret(&SecretString::from(secret.clone()))
            .expect("hash test secret");
        let pool = self.pg_pool();
        let mut conn = platform::postgres::connection(&pool)
            .await
            .expect("test connection");
        let id = diesel::insert_into(gateway_clients::table)
            .values((
                gateway_clients::client_id.eq(&client_id),
                gateway_clients::name.eq("test gateway"),
                gateway_clients::secret_hash.eq(hash),
            ))
            .returning(gateway_clients::id)
            .get_result(&mut conn)
            .await
            .expect("insert test gateway");
        TestGateway {
            id,
            client_id,
            secret,
        }
    }

    /// The signing key services of this context trust.
    pub fn signing_key(&self) -> platform::auth::SigningKey {
        platform::auth::SigningKey::from_pem_file(&self.key_dir.join(admin::keys::PRIVATE_KEY_FILE))
            .expect("test signing key")
    }
}

impl TestApp {
    /// A request to `path` on this service.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.address))
    }

    /// Logs in through this (auth) service and returns the JSON answer.
    pub async fn login(&self, user: &TestUser) -> serde_json::Value {
        let response = self
            .request(reqwest::Method::POST, "/api/v1/auth/login")
            .json(&serde_json::json!({"username": user.username, "password": user.password}))
            .send()
            .await
            .expect("login request");
        assert_eq!(response.status(), 200, "login of {}", user.username);
        response.json().await.expect("login JSON")
    }

    /// An access token for `user`.
    pub async fn token_for(&self, user: &TestUser) -> String {
        self.login(user).await["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// A gateway token through client credentials.
    pub async fn gateway_token(&self, gateway: &TestGateway) -> String {
        let response = self
            .request(reqwest::Method::POST, "/api/v1/auth/token")
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", gateway.client_id.as_str()),
                ("client_secret", gateway.secret.as_str()),
            ])
            .send()
            .await
            .expect("token request");
        assert_eq!(response.status(), 200, "gateway token");
        let body: serde_json::Value = response.json().await.expect("token JSON");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }
}

impl TestContext {
    /// Registers a machine with `status` in factory `A`; returns its id.
    pub async fn create_machine(&self, status: domain::MachineStatus) -> uuid::Uuid {
        let name = format!("Machine {}", uuid::Uuid::new_v4().simple());
        self.create_named_machine("A", &name, status).await
    }

    /// Registers a machine named `name` in `factory`; returns its id.
    pub async fn create_named_machine(
        &self,
        factory: &str,
        name: &str,
        status: domain::MachineStatus,
    ) -> uuid::Uuid {
        use diesel::ExpressionMethods;
        use storage::schema::machine_metadata;
        let pool = self.pg_pool();
        let mut conn = platform::postgres::connection(&pool)
            .await
            .expect("test connection");
        diesel::insert_into(machine_metadata::table)
            .values((
                machine_metadata::name.eq(name),
                machine_metadata::location.eq("Hall 1"),
                machine_metadata::sensor_type.eq("multi"),
                machine_metadata::status.eq(status.as_str()),
                machine_metadata::factory_id.eq(factory),
            ))
            .returning(machine_metadata::id)
            .get_result(&mut conn)
            .await
            .expect("insert test machine")
    }

    /// Stores a setting before services start (they read settings at start and every second).
    pub async fn set_setting(&self, name: &str, value: serde_json::Value) {
        let spec = domain::settings::spec(name).expect("known setting");
        let value = spec.parse(&value).expect("valid setting value");
        let pool = self.pg_pool();
        let mut conn = platform::postgres::connection(&pool)
            .await
            .expect("test connection");
        storage::settings::upsert(&mut conn, name, &value, None)
            .await
            .expect("store setting");
    }

    /// Every raw point of this test's Influx database, as rows of
    /// (time ns, factory_id, location, machine_id, sensor_type, temperature, pressure, speed).
    pub async fn influx_points(&self) -> Vec<serde_json::Value> {
        let answer = self
            .influx()
            .query("SELECT factory_id, location, machine_id, sensor_type, temperature, pressure, speed FROM sensor_readings ORDER BY time")
            .await
            .expect("query points");
        answer
            .into_iter()
            .flatten()
            .flat_map(|series| series.values)
            .map(serde_json::Value::from)
            .collect()
    }
}

/// Asserts one row of [`TestContext::influx_points`]: time, the tags of a test machine
/// (factory `A`, `Hall 1`, `multi`) and the three field values.
pub fn assert_point(
    point: &serde_json::Value,
    time_ns: i64,
    machine: &uuid::Uuid,
    values: [f64; 3],
) {
    let row = point.as_array().expect("a point row");
    assert_eq!(
        row[..5],
        serde_json::json!([time_ns, "A", "Hall 1", machine.to_string(), "multi"])
            .as_array()
            .expect("expected tags")[..]
    );
    let stored: Vec<f64> = row[5..8]
        .iter()
        .map(|v| v.as_f64().expect("a numeric field"))
        .collect();
    assert_eq!(stored, values);
}

impl TestApp {
    /// `GET path` with a bearer token, answered as JSON.
    pub async fn get_json(&self, path: &str, token: &str) -> serde_json::Value {
        self.request(reqwest::Method::GET, path)
            .bearer_auth(token)
            .send()
            .await
            .expect("request reaches the service")
            .json()
            .await
            .expect("a JSON answer")
    }
}
