//! The stack a fault scenario runs against — the four services as real processes behind
//! nginx, with one backing service of the scenario's own — and the summary each scenario
//! prints (and leaves in `target/test-output/faults/` for `make faults`).

use plantline_e2e::backing::{Kind, PrivateBacking};
use plantline_e2e::front::{Front, Upstreams};
use plantline_e2e::net::{Gate, LatencyProxy, ServiceProcess, stable_port};
use plantline_e2e::{Backends, TestContext, TestGateway, TestUser, workspace_root};
use reqwest::StatusCode;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long each outage lasts: 30 s as the promise is stated; `PLANTLINE_FAULT_SECS`
/// shortens it while working on a scenario.
pub fn outage() -> Duration {
    let secs = std::env::var("PLANTLINE_FAULT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// A service of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Auth,
    Ingest,
    Query,
    Bridge,
}

impl Service {
    /// Every service of the stack, in start order.
    pub const ALL: [Self; 4] = [Self::Auth, Self::Ingest, Self::Query, Self::Bridge];

    fn binary(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Ingest => "ingest-api",
            Self::Query => "query-api",
            Self::Bridge => "mqtt-bridge",
        }
    }
}

/// How the services reach the faulted backing service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Straight to it.
    Direct,
    /// Through a [`Gate`] the scenario can close (the service cannot reach it while the
    /// service itself is fine).
    Gate,
    /// Through a [`LatencyProxy`] (a slow network path or a slow server).
    Slow,
}

/// One scenario's world.
pub struct Stack {
    /// The faulted backing service.
    pub backing: PrivateBacking,
    /// Databases, prefixes and the services' environment.
    pub ctx: TestContext,
    /// nginx in front of auth, ingest-api and query-api.
    pub front: Front,
    /// The gateway the HTTP load authenticates as.
    pub gateway: TestGateway,
    /// A plant manager.
    pub manager: TestUser,
    /// An operator.
    pub operator: TestUser,
    /// The MQTT broker's URL, for devices (always direct).
    pub mqtt_url: String,
    /// With [`Route::Gate`]: the gate between the services and the faulted service.
    pub gate: Option<Gate>,
    /// With [`Route::Slow`]: the proxy between the services and the faulted service.
    pub proxy: Option<LatencyProxy>,
    /// With [`Stack::start_gating_redis`]: a gate between the services and the shared Redis.
    pub redis_gate: Option<Gate>,
    /// `None` while killed.
    processes: Vec<(Service, u16, Option<ServiceProcess>)>,
    env: Vec<(String, String)>,
    logs: PathBuf,
}

impl Stack {
    /// A private `faulted` backing service, everything else on the shared ones; the four
    /// services started with `env` on top of the test context's.
    pub async fn start(faulted: Kind, route: Route, env: &[(&str, &str)]) -> Self {
        Self::start_with(faulted, route, env, false).await
    }

    /// Like [`start`](Self::start), with the shared Redis behind a gate too, for faults of
    /// two services at once.
    pub async fn start_gating_redis(faulted: Kind, route: Route, env: &[(&str, &str)]) -> Self {
        Self::start_with(faulted, route, env, true).await
    }

    async fn start_with(
        faulted: Kind,
        route: Route,
        env: &[(&str, &str)],
        gate_redis: bool,
    ) -> Self {
        let backing = PrivateBacking::start(faulted).await;
        let target = format!("127.0.0.1:{}", backing.port);
        let (mut gate, mut proxy) = (None, None);
        let routed_port = match route {
            Route::Direct => backing.port,
            Route::Gate => {
                let mut opened = Gate::closed(&target);
                opened.open().await;
                let port = opened.port;
                gate = Some(opened);
                port
            }
            Route::Slow => {
                let started = LatencyProxy::start(&target).await;
                let port = started.port;
                proxy = Some(started);
                port
            }
        };
        let routed = backing
            .url()
            .replace(&format!(":{}", backing.port), &format!(":{routed_port}"));
        let mut shared = Backends::from_env();
        let mut redis_gate = None;
        if gate_redis {
            let redis = shared
                .redis_url
                .trim_start_matches("redis://")
                .split('/')
                .next()
                .unwrap_or("127.0.0.1:6379")
                .to_owned();
            let mut opened = Gate::closed(&redis);
            opened.open().await;
            shared.redis_url =
                shared
                    .redis_url
                    .replacen(&redis, &format!("127.0.0.1:{}", opened.port), 1);
            redis_gate = Some(opened);
        }
        let backends = match faulted {
            Kind::Postgres => shared.with_postgres(routed),
            Kind::Redis => Backends {
                redis_url: routed,
                ..shared
            },
            Kind::Mosquitto => Backends {
                mqtt_url: routed,
                ..shared
            },
            Kind::Influx => Backends {
                influx_url: routed,
                ..shared
            },
        };
        let mqtt_url = match faulted {
            Kind::Mosquitto => backing.url(),
            _ => backends.mqtt_url.clone(),
        };
        let ctx = TestContext::with_backends(backends).await;
        let gateway = ctx.create_gateway().await;
        let manager = ctx.create_user(domain::Role::Management).await;
        let operator = ctx.create_user(domain::Role::Operator).await;
        let mut full_env = ctx.env.clone();
        full_env.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let logs = std::env::temp_dir().join(format!(
            "plantline-fault-logs-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&logs).expect("log folder");
        let mut stack_processes = Vec::new();
        for service in Service::ALL {
            stack_processes.push((service, stable_port(), None));
        }
        let address = |service: Service| {
            let port = stack_processes
                .iter()
                .find(|(s, _, _)| *s == service)
                .map(|(_, port, _)| *port)
                .unwrap_or_default();
            format!("127.0.0.1:{port}")
        };
        let front = Front::start(Upstreams {
            auth: &address(Service::Auth),
            ingest: &address(Service::Ingest),
            query: &address(Service::Query),
        })
        .await;
        let mut stack = Self {
            backing,
            ctx,
            front,
            gateway,
            manager,
            operator,
            mqtt_url,
            gate,
            proxy,
            redis_gate,
            processes: stack_processes,
            env: full_env,
            logs,
        };
        stack.launch_all().await;
        stack
    }

    /// Starts all four services and waits until each is ready.
    pub async fn launch_all(&mut self) {
        for service in Service::ALL {
            self.launch(service);
        }
        for service in Service::ALL {
            self.process(service)
                .until_ready(Duration::from_secs(30))
                .await;
        }
    }

    /// Starts `service` (again), on its port, appending to its log.
    pub fn launch(&mut self, service: Service) {
        self.launch_with(service, &[]);
    }

    /// [`launch`](Self::launch) with `overrides` on top of the stack's environment: one
    /// service configured apart from the others.
    pub fn launch_with(&mut self, service: Service, overrides: &[(&str, String)]) {
        let log = self.logs.join(format!("{}.log", service.binary()));
        let mut env = self.env.clone();
        env.extend(overrides.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        if let Some((_, port, process)) = self.processes.iter_mut().find(|(s, _, _)| *s == service)
        {
            *process = Some(ServiceProcess::start_logged(
                service.binary(),
                &env,
                *port,
                log,
            ));
        }
    }

    /// `kill -9` of `service`.
    pub fn kill(&mut self, service: Service) {
        if let Some((_, _, process)) = self.processes.iter_mut().find(|(s, _, _)| *s == service)
            && let Some(process) = process.take()
        {
            process.kill();
        }
    }

    /// SIGTERM to every running service at once; each one's time to exit and exit status
    /// (`None`: still running after `limit`, then killed).
    pub async fn terminate_all(
        &mut self,
        limit: Duration,
    ) -> Vec<(Service, Option<(Duration, bool)>)> {
        let stopping = self
            .processes
            .iter_mut()
            .filter_map(|(service, _, process)| Some((*service, process.take()?)))
            .map(|(service, process)| async move { (service, process.terminate(limit).await) });
        futures_util::future::join_all(stopping).await
    }

    /// The running process of `service`.
    pub fn process(&self, service: Service) -> &ServiceProcess {
        self.processes
            .iter()
            .find(|(s, _, _)| *s == service)
            .and_then(|(_, _, p)| p.as_ref())
            .expect("service running")
    }

    /// A gateway's HTTP client through nginx, as the simulator uses it.
    pub fn gateway_client(&self) -> simulator::GatewayClient {
        simulator::GatewayClient::new(
            &self.front.url,
            &self.gateway.client_id,
            &self.gateway.secret,
        )
    }

    /// `POST /api/v1/auth/login` through nginx: the status and, on success, the access token.
    pub async fn login(&self, user: &TestUser) -> (StatusCode, Option<String>) {
        let Ok(answer) = http()
            .post(format!("{}/api/v1/auth/login", self.front.url))
            .json(&serde_json::json!({"username": user.username, "password": user.password}))
            .send()
            .await
        else {
            return (StatusCode::BAD_GATEWAY, None);
        };
        let status = answer.status();
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        (status, body["access_token"].as_str().map(str::to_owned))
    }

    /// A request through nginx with `token`; its status (502 when nginx got no answer).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> StatusCode {
        let mut request = http()
            .request(method, format!("{}{path}", self.front.url))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Ok(answer) => answer.status(),
            Err(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// Waits (up to 30 s) until InfluxDB holds the readings `acked` for `machine` over
    /// `path`, then records the comparison (see [`Summary::reconciled`]).
    pub async fn check_stored(
        &self,
        summary: &mut Summary,
        path: &str,
        machine: &uuid::Uuid,
        acked: &[plantline_e2e::load::Sample],
        exact: bool,
    ) {
        let result = plantline_e2e::load::reconcile(
            &self.ctx.influx(),
            machine,
            acked,
            Duration::from_secs(30),
        )
        .await;
        summary.reconciled(path, &result, exact);
    }

    /// [`check_stored`](Self::check_stored) for both paths of a scenario: the HTTP feeder's
    /// machine and the MQTT device's, each exact.
    pub async fn check_both_stored(
        &self,
        summary: &mut Summary,
        (machine, http_acked): (&uuid::Uuid, &[plantline_e2e::load::Sample]),
        device: &Device,
    ) {
        self.check_stored(summary, "HTTP", machine, http_acked, true)
            .await;
        self.check_stored(summary, "MQTT", &device.machine, &device.acked, true)
            .await;
    }

    /// An MQTT device of a new active machine.
    pub async fn device(&self) -> Device {
        let machine = self.ctx.create_machine(domain::MachineStatus::Active).await;
        Device {
            machine,
            acked: Vec::new(),
            topic: self.topic(&machine),
            url: self.mqtt_url.clone(),
            source: plantline_e2e::load::SampleSource::default(),
        }
    }

    /// A telemetry topic of `machine` (in this scenario's prefix).
    pub fn topic(&self, machine: &uuid::Uuid) -> String {
        self.ctx.telemetry_topic("A", machine)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (_, _, process) in &mut self.processes {
            process.take();
        }
        let _ = std::fs::remove_dir_all(&self.logs);
    }
}

/// A machine's MQTT device in a scenario: publishes QoS 1 bursts straight to the broker and
/// keeps what the broker acknowledged.
pub struct Device {
    /// Its machine.
    pub machine: uuid::Uuid,
    /// Readings PUBACKed so far.
    pub acked: Vec<plantline_e2e::load::Sample>,
    topic: String,
    url: String,
    source: plantline_e2e::load::SampleSource,
}

impl Device {
    /// Publishes `messages` messages of 5 readings each.
    pub async fn publish(&mut self, messages: usize) {
        let published =
            plantline_e2e::load::mqtt_burst(&self.url, &self.topic, messages, 5, &mut self.source)
                .await;
        self.acked.extend(published.acked);
    }

    /// Whether InfluxDB comes to hold exactly as many readings as were acknowledged, within
    /// `limit`.
    pub async fn all_stored(
        &self,
        influx: &platform::influx::InfluxClient,
        limit: Duration,
    ) -> bool {
        within(limit, || async {
            plantline_e2e::load::stored(influx, &self.machine)
                .await
                .len()
                == self.acked.len()
        })
        .await
    }
}

/// Statuses counted, as `201×12, 503×3`.
pub fn tally(statuses: impl IntoIterator<Item = u16>) -> String {
    let mut counts = std::collections::BTreeMap::<u16, usize>::new();
    for status in statuses {
        *counts.entry(status).or_default() += 1;
    }
    counts
        .iter()
        .map(|(status, count)| format!("{status}×{count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A client with a per-request deadline, so no check can hang a scenario.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("HTTP client")
}

/// A scenario's summary: notes and checks, printed and written to
/// `target/test-output/faults/<number>.txt`; the test fails if any check did.
pub struct Summary {
    number: u8,
    title: &'static str,
    started: Instant,
    lines: Vec<String>,
    failed: Vec<String>,
}

impl Summary {
    /// Scenario `number`: `title`.
    pub fn new(number: u8, title: &'static str) -> Self {
        Self {
            number,
            title,
            started: Instant::now(),
            lines: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// A measured figure.
    pub fn note(&mut self, line: impl Into<String>) {
        self.lines.push(format!("    {}", line.into()));
    }

    /// A promise: `ok` or not.
    pub fn check(&mut self, ok: bool, what: impl Into<String>) {
        let what = what.into();
        self.lines
            .push(format!("  {} {what}", if ok { "ok  " } else { "FAIL" }));
        if !ok {
            self.failed.push(what);
        }
    }

    /// What the load got acknowledged on `path` against what InfluxDB holds: nothing lost,
    /// and (when `exact`) nothing else either — same count, same checksum.
    pub fn reconciled(
        &mut self,
        path: &str,
        result: &plantline_e2e::load::Reconciled,
        exact: bool,
    ) {
        let same = result.checksums.0 == result.checksums.1;
        self.check(
            result.lost == 0 && (same || !exact) && result.acked > 0,
            format!(
                "{path}: acknowledged {} readings, InfluxDB holds {}, lost {}{}",
                result.acked,
                result.stored,
                result.lost,
                match (exact, same) {
                    (_, true) => ", checksums equal",
                    (true, false) => ", checksums DIFFER",
                    (false, false) => "",
                }
            ),
        );
    }

    /// Writes and prints the summary; panics when a check failed.
    pub fn finish(self) {
        let verdict = if self.failed.is_empty() {
            "PASS"
        } else {
            "FAIL"
        };
        let text = format!(
            "{verdict}  {}. {} ({:.0} s)\n{}\n",
            self.number,
            self.title,
            self.started.elapsed().as_secs_f64(),
            self.lines.join("\n")
        );
        let dir = workspace_root().join("target/test-output/faults");
        if std::fs::create_dir_all(&dir).is_ok() {
            let _ = std::fs::write(dir.join(format!("{}.txt", self.number)), &text);
        }
        println!("{text}");
        assert!(
            self.failed.is_empty(),
            "scenario {} failed: {}\n{text}",
            self.number,
            self.failed.join("; ")
        );
    }
}

/// The sum of the samples of `family` (without `plantline_`) that `service` exports, over
/// the series whose labels contain `labels` (`""` for all); 0 while it does not answer.
pub async fn metric(service: &str, family: &str, labels: &str) -> u64 {
    let Ok(answer) = reqwest::get(format!("{service}/metrics")).await else {
        return 0;
    };
    let text = answer.text().await.unwrap_or_default();
    let prefix = format!("plantline_{family}{{");
    text.lines()
        .filter(|line| line.starts_with(&prefix) && line.contains(labels))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Polls `check` every 200 ms until it is true or `limit` has passed; whether it became true.
pub async fn within(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
