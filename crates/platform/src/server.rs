//! The HTTP server skeleton every service runs: bind, JSON errors, request ids, metrics,
//! health endpoints, owned signals and a drain on shutdown.

use crate::config::Settings;
use crate::error::{self, json_error_responses};
use crate::health::{self, Readiness};
use crate::metrics::Metrics;
use actix_web::dev::{Server, Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::ErrorHandlers;
use actix_web::{App, HttpMessage, HttpServer, web};
use futures_util::future::LocalBoxFuture;
use std::net::TcpListener;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// The four services, with their default local ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceName {
    /// Logins, tokens, users, gateways.
    Auth,
    /// The HTTP telemetry write path.
    IngestApi,
    /// Reads, registry, configuration, dashboard.
    QueryApi,
    /// MQTT → InfluxDB.
    MqttBridge,
}

impl ServiceName {
    pub const ALL: [Self; 4] = [
        Self::Auth,
        Self::IngestApi,
        Self::QueryApi,
        Self::MqttBridge,
    ];

    /// The binary's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::IngestApi => "ingest-api",
            Self::QueryApi => "query-api",
            Self::MqttBridge => "mqtt-bridge",
        }
    }

    /// The port it listens on locally unless configured otherwise.
    pub fn default_port(&self) -> u16 {
        match self {
            Self::Auth => 8081,
            Self::IngestApi => 8082,
            Self::QueryApi => 8083,
            Self::MqttBridge => 8084,
        }
    }
}

/// The request id of the current request: the proxy's `X-Request-Id` when it is sane, a new
/// UUID otherwise. Handlers read it from request extensions (audit log, error reports).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn request_id_of(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The client's address: the peer, or the proxy's `X-Real-IP` when the peer is a proxy on
/// loopback or a private network (nginx in every deployment). Never trusted from the internet.
pub fn client_ip(req: &actix_web::HttpRequest) -> String {
    let peer = req.peer_addr().map(|addr| addr.ip());
    let behind_proxy = peer.is_some_and(|ip| match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
        std::net::IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local(),
    });
    if behind_proxy
        && let Some(real) = req
            .headers()
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<std::net::IpAddr>().ok())
    {
        return real.to_string();
    }
    peer.map(|ip| ip.to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// What a service adds to the common skeleton.
pub struct ServiceParts<F> {
    pub service: ServiceName,
    /// Dependencies `/readyz` checks.
    pub readiness: Readiness,
    /// Registry the service's own metrics are registered in.
    pub metrics: Metrics,
    /// Token verification, for services with authenticated routes.
    pub verification: Option<crate::auth::Verification>,
    /// Registers the service's routes and its shared state (`web::Data`).
    pub routes: F,
}

/// A bound, not yet running service. `port()` tells where it listens (tests bind port 0).
pub struct Application {
    service: ServiceName,
    port: u16,
    server: Server,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    drain_timeout: Duration,
    /// Set when an essential task ended on its own: the process then exits with an error.
    failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// A handler's answer, or 503 at `deadline`: a handler waiting on a dependency that went
/// silent answers instead of never (the last line of defence under every client-side
/// deadline).
fn bounded<F, B>(
    call: F,
    deadline: Duration,
) -> LocalBoxFuture<'static, actix_web::Result<ServiceResponse>>
where
    F: std::future::Future<Output = actix_web::Result<ServiceResponse<B>>> + 'static,
    B: actix_web::body::MessageBody + 'static,
{
    Box::pin(async move {
        match tokio::time::timeout(deadline, call).await {
            Ok(answer) => answer.map(|r| r.map_into_boxed_body()),
            Err(_) => Err(crate::ApiError::unavailable(
                "a dependency did not answer in time; retry",
                5,
            )
            .into()),
        }
    })
}

impl Application {
    /// Binds the listener and builds the server; nothing is served until
    /// [`run_until_stopped`](Self::run_until_stopped).
    pub fn build<F>(settings: &Settings, parts: ServiceParts<F>) -> std::io::Result<Self>
    where
        F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    {
        let ServiceParts {
            service,
            readiness,
            metrics,
            verification,
            routes,
        } = parts;
        let tasks = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let verification = start_verification(verification, &tasks, &shutdown);
        let listener =
            TcpListener::bind((settings.http.host.as_str(), settings.port_for(service)))?;
        let port = listener.local_addr()?.port();
        let service_data = web::Data::new(service);
        let readiness = web::Data::new(readiness);
        let metrics_data = web::Data::new(metrics.clone());
        let request_deadline = settings.http.request_deadline();

        let server = HttpServer::new(move || {
            let metrics = metrics.clone();
            let mut app = App::new();
            if let Some((verifier, unchecked)) = &verification {
                app = app.app_data(verifier.clone()).app_data(unchecked.clone());
            }
            app.app_data(service_data.clone())
                .app_data(readiness.clone())
                .app_data(metrics_data.clone())
                .app_data(error::query_config())
                .app_data(error::path_config())
                .app_data(error::json_config(256 * 1024))
                .configure(health::configure)
                .configure(routes.clone())
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(crate::ApiError::not_found(
                        "no such resource",
                    ))
                }))
                .wrap(ErrorHandlers::new().default_handler(json_error_responses))
                .wrap_fn(move |req, srv| {
                    let (log, span) = RequestLog::start(&req);
                    let response: LocalBoxFuture<'static, actix_web::Result<ServiceResponse>> =
                        match boundary_refusal(&req, log.method) {
                            Some(err) => {
                                let refused = req.error_response(err);
                                Box::pin(async move { Ok(refused) })
                            }
                            None => bounded(srv.call(req), request_deadline),
                        };
                    log.finish(response, metrics.clone()).instrument(span)
                })
        })
        .disable_signals()
        .keep_alive(IDLE_KEEP_ALIVE)
        .shutdown_timeout(settings.http.shutdown_timeout_secs)
        .workers(worker_count(settings.http.workers))
        .listen(listener)?
        .run();
        Ok(Self {
            service,
            port,
            server,
            shutdown,
            tasks,
            drain_timeout: Duration::from_secs(settings.http.shutdown_timeout_secs),
            failed: Default::default(),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cancelled when the service stops; background tasks select on it and finish their work.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs a background task that shutdown waits for (after the HTTP server has drained).
    pub fn spawn_background<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Runs a task the service is useless without (e.g. the bridge's pipeline). If it panics
    /// or returns before shutdown, the service stops with an error, so the supervisor restarts
    /// it instead of a half-working process reporting ready.
    pub fn spawn_essential<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (token, failed) = (self.shutdown.clone(), self.failed.clone());
        let handle = tokio::spawn(task);
        self.tasks.spawn(async move {
            let outcome = handle.await;
            if token.is_cancelled() && outcome.is_ok() {
                return;
            }
            match outcome {
                Err(err) => tracing::error!(task = name, error = %err, "essential task failed; stopping the service"),
                Ok(()) => tracing::error!(task = name, "essential task ended early; stopping the service"),
            }
            failed.store(true, std::sync::atomic::Ordering::Relaxed);
            token.cancel();
        });
    }

    /// Serves until SIGTERM/SIGINT or the shutdown token, then drains within one budget of
    /// `http.shutdown_timeout_secs` from the stop request: in-flight requests first, then
    /// background tasks with what is left. Should anything still hang a few seconds past the
    /// budget, the process exits anyway: a supervisor's grace period ends in `kill -9`, and
    /// an exit of our own at least logs why.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let token = self.shutdown.clone();
        let service = self.service;
        let budget = self.drain_timeout;
        let stop_requested = std::sync::Arc::new(std::sync::OnceLock::<Instant>::new());
        let requested = stop_requested.clone();
        let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watched = finished.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = crate::shutdown::signal() => {},
                () = token.cancelled() => {},
            }
            let _ = requested.set(Instant::now());
            exit_if_stuck(service, budget + STUCK_GRACE, watched);
            tracing::info!(service = service.as_str(), "draining in-flight requests");
            token.cancel();
            handle.stop(true).await;
        });
        tracing::info!(service = service.as_str(), port = self.port, "listening");
        self.server.await?;
        self.tasks.close();
        let spent = stop_requested
            .get()
            .map_or(Duration::ZERO, Instant::elapsed);
        let left = budget.saturating_sub(spent).max(Duration::from_secs(1));
        if tokio::time::timeout(left, self.tasks.wait()).await.is_err() {
            tracing::warn!(
                service = service.as_str(),
                "background tasks did not finish in time"
            );
        }
        finished.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(service = service.as_str(), "stopped");
        if self.failed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::Error::other("an essential task failed"));
        }
        Ok(())
    }
}

/// Past the shutdown budget, how long a stuck stop may take before the process exits anyway.
const STUCK_GRACE: Duration = Duration::from_secs(3);

/// A watchdog thread: ends the process `after` from now unless the drain has `finished`
/// (a service run inside a test process must not take the process with it).
fn exit_if_stuck(
    service: ServiceName,
    after: Duration,
    finished: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let spawned = std::thread::Builder::new()
        .name("shutdown-watchdog".into())
        .spawn(move || {
            std::thread::sleep(after);
            if finished.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            // No telemetry flush: an exporter stuck on a silent collector is one of the
            // things this exit is for.
            tracing::error!(
                service = service.as_str(),
                waited_secs = after.as_secs(),
                "shutdown did not finish in time; exiting"
            );
            std::process::exit(1);
        });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "no shutdown watchdog");
    }
}

type VerificationData = (
    web::Data<crate::auth::TokenVerifier>,
    web::Data<crate::auth::extractor::UncheckedRevocations>,
);

/// Starts mirroring the revocation list (a background task the shutdown waits for) and
/// returns what the handlers verify tokens with.
fn start_verification(
    verification: Option<crate::auth::Verification>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Option<VerificationData> {
    let v = verification?;
    let cache = v.verifier.revocations().clone();
    tasks.spawn(cache.run_sync(v.redis, v.poll, shutdown.clone()));
    Some((v.verifier, v.unchecked))
}

/// 0 means half the cores (at least one): the services are asynchronous and share their
/// machine with InfluxDB, nginx and Redis, which need the other half. On the 2-core
/// reference machine this lifts ingest throughput by ~15% (`make bench`).
fn worker_count(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism()
            .map(|n| (n.get() / 2).max(1))
            .unwrap_or(1),
        n => n,
    }
}

/// What the request metrics and log line need, taken before the request is handled.
struct RequestLog {
    request_id: String,
    method: &'static str,
    route: String,
    /// Probes and scrapes are logged at debug level, so they do not drown the requests.
    quiet: bool,
    started: Instant,
}

impl RequestLog {
    /// Settles the request id (kept in the request's extensions for handlers) and opens the
    /// request's span, continuing the caller's trace.
    fn start(req: &ServiceRequest) -> (Self, tracing::Span) {
        let request_id = request_id_of(req);
        req.extensions_mut().insert(RequestId(request_id.clone()));
        // A closed set: a made-up method must not become a new metric series.
        let method = method_label(req.method());
        let route = req
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_owned());
        let quiet = matches!(route.as_str(), "/healthz" | "/readyz" | "/metrics");
        let span = tracing::info_span!(
            "request",
            request_id = %request_id,
            method = %method,
            route = %route,
        );
        crate::telemetry::continue_trace(&span, req.headers());
        let log = Self {
            request_id,
            method,
            route,
            quiet,
            started: Instant::now(),
        };
        (log, span)
    }

    /// Awaits the response, then records its metric, echoes the request id and logs it.
    async fn finish(
        self,
        response: LocalBoxFuture<'static, actix_web::Result<ServiceResponse>>,
        metrics: Metrics,
    ) -> actix_web::Result<ServiceResponse> {
        let mut response = response.await?;
        let status = response.status().as_u16();
        let elapsed = self.started.elapsed();
        metrics.observe_request(self.method, &self.route, status, elapsed.as_secs_f64());
        if let Ok(value) = HeaderValue::from_str(&self.request_id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        let latency_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
        if status >= 500 {
            tracing::error!(status, latency_ms, "request failed");
        } else if self.quiet {
            tracing::debug!(status, latency_ms, "request finished");
        } else {
            tracing::info!(status, latency_ms, "request finished");
        }
        Ok(response)
    }
}

/// How long an idle connection stays open: longer than nginx keeps its idle upstream
/// connections (`keepalive_timeout 60s`), so nginx never sends a request on a connection we
/// are closing. With actix's default of 5 s it did, and answered that POST 502.
const IDLE_KEEP_ALIVE: Duration = Duration::from_secs(75);

/// Error type service builders return; startup failures are reported and end the process.
pub type StartupError = Box<dyn std::error::Error + Send + Sync>;

/// The whole `main` of a service: load and validate configuration, start logging, build,
/// serve until a signal. Configuration errors go to stderr, since logging depends on them.
pub async fn serve_main<B, Fut>(service: ServiceName, build: B) -> std::process::ExitCode
where
    B: FnOnce(Settings) -> Fut,
    Fut: Future<Output = Result<Application, StartupError>>,
{
    // Before the configuration: --help and --version need no environment.
    let command = clap::Command::new(service.as_str())
        .version(env!("CARGO_PKG_VERSION"))
        .about(format!(
            "Plantline's {} service. Configured by defaults, an optional TOML file \
             (PLANTLINE_CONFIG_FILE) and PLANTLINE_<SECTION>__<KEY> environment variables; \
             see the README's Configuration table.",
            service.as_str()
        ))
        .subcommand(clap::Command::new("healthcheck").about(
            "Exit 0 when this service answers /healthz on its port (the container's HEALTHCHECK)",
        ))
        .get_matches();
    let settings = match crate::config::load_settings() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("{}: {err}", service.as_str());
            return std::process::ExitCode::from(2);
        }
    };
    // `<service> healthcheck`: the container's HEALTHCHECK (distroless has no curl).
    if command.subcommand_name() == Some("healthcheck") {
        let port = settings.port_for(service);
        return match check_own_health(port, Duration::from_secs(2)) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(reason) => {
                eprintln!("{}: unhealthy: {reason}", service.as_str());
                std::process::ExitCode::FAILURE
            }
        };
    }
    crate::telemetry::init(service, &settings.log);
    let outcome = match build(settings).await {
        Ok(app) => app.run_until_stopped().await.map_err(StartupError::from),
        Err(err) => Err(err),
    };
    let code = match outcome {
        Ok(()) => 0,
        Err(err) => {
            tracing::error!(error = %err, "service failed");
            1
        }
    };
    crate::telemetry::flush_within(Duration::from_secs(2));
    // Not a return: dropping the runtime would wait for any blocking call still stuck in a
    // dependency (a silent socket), and everything worth finishing has finished.
    std::process::exit(code)
}

/// `GET /healthz` on this host's `port`, over a plain socket: 200 or the reason it is not.
fn check_own_health(port: u16, timeout: Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| format!("connect to {address}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut head = [0u8; 32];
    let read = stream.read(&mut head).map_err(|e| format!("read: {e}"))?;
    let status_line = String::from_utf8_lossy(&head[..read]);
    if status_line.starts_with("HTTP/1.1 200") || status_line.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(format!(
            "answered {:?}",
            status_line.lines().next().unwrap_or_default()
        ))
    }
}

/// The method as a metric label: one of a closed set, so clients cannot mint series.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// What is refused before routing: a method no route can have (405), and a query string
/// breaking the text rule (400 naming the parameter).
fn boundary_refusal(req: &ServiceRequest, method: &str) -> Option<crate::ApiError> {
    if method == "OTHER" {
        return Some(crate::ApiError::for_status(
            actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        ));
    }
    crate::extract::check_query(req.query_string()).err()
}
