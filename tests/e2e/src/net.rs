//! Faults a test controls: a TCP gate in front of a real service that can be closed (the port
//! refuses connections) and opened (it forwards), and services run as separate processes so a
//! test can `kill -9` them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::task::JoinSet;

/// A loopback port that forwards to `target` while open and refuses connections while closed.
pub struct Gate {
    /// The port clients are pointed at.
    pub port: u16,
    target: String,
    forwarding: Option<tokio::task::JoinHandle<()>>,
    /// Cancelled: the gate goes silent.
    hush: tokio_util::sync::CancellationToken,
}

impl Gate {
    /// A closed gate in front of `target` (`host:port`).
    pub fn closed(target: &str) -> Self {
        Self {
            port: crate::closed_port(),
            target: target.to_owned(),
            forwarding: None,
            hush: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts forwarding (again): connections cut before are gone, new ones go through.
    pub async fn open(&mut self) {
        self.close();
        self.hush = tokio_util::sync::CancellationToken::new();
        let listener = bind_again(self.port).await;
        let target = self.target.clone();
        let hush = self.hush.clone();
        self.forwarding = Some(tokio::spawn(async move {
            let mut connections = JoinSet::new();
            let mut held = Vec::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if hush.is_cancelled() {
                    held.push(inbound);
                    continue;
                }
                let (target, hush) = (target.clone(), hush.clone());
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            // Both sockets stay open; nothing moves either way.
                            () = hush.cancelled() => std::future::pending::<()>().await,
                        }
                    }
                });
            }
        }));
    }

    /// Goes silent without closing anything: open connections stop carrying bytes either
    /// way, new ones are accepted and hear nothing. A dependency whose process hangs, or a
    /// network that drops instead of refusing. [`open`](Self::open) ends it.
    pub fn go_silent(&mut self) {
        self.hush.cancel();
    }

    /// Stops forwarding and answers every HTTP request itself with `status` and the JSON
    /// `body` (as a proxy in front of InfluxDB would after a credential change): the service
    /// behind is fine, but its clients are refused. Open connections are cut.
    pub async fn answer_with(&mut self, status: u16, body: &str) {
        self.close();
        let listener = bind_again(self.port).await;
        let response = format!(
            "HTTP/1.1 {status} Refused\r\nContent-Type: application/json\r\nX-Influxdb-Error: {body}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        self.forwarding = Some(tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let response = response.clone();
                connections.spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    // Read the whole request first: closing with unread bytes would reset
                    // the connection before the client reads the answer.
                    if read_request(&mut inbound).await.is_ok() {
                        let _ = inbound.write_all(response.as_bytes()).await;
                        let _ = inbound.shutdown().await;
                    }
                });
            }
        }));
    }

    /// Stops forwarding: open connections are cut, new ones refused.
    pub fn close(&mut self) {
        if let Some(task) = self.forwarding.take() {
            task.abort();
        }
    }
}

/// Binds `port` again once the gate's last listener is gone (an aborted task drops it soon,
/// not at once).
async fn bind_again(port: u16) -> tokio::net::TcpListener {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => return listener,
            Err(err) if std::time::Instant::now() >= deadline => {
                panic!("gate port {port} not free again: {err}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Reads one HTTP/1.1 request (headers, then `Content-Length` bytes of body).
async fn read_request(stream: &mut tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        seen.extend_from_slice(&chunk[..n]);
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let headers = String::from_utf8_lossy(&seen[..header_end]).to_ascii_lowercase();
    let length: usize = headers
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    let mut body_read = seen.len() - header_end;
    while body_read < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body_read += n;
    }
    Ok(())
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.close();
    }
}

/// A free port below Linux's ephemeral range (32768+): while the service behind it is
/// stopped, no other test's `bind(0)` can take it.
pub fn stable_port() -> u16 {
    let seed = uuid::Uuid::new_v4().as_u128();
    (0..200u128)
        .map(|i| 20_000 + ((seed + i * 7919) % 12_000) as u16)
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port between 20000 and 32000")
}

/// Where cargo put the workspace's binaries (next to the test binary's `deps` folder).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile folder");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the service binaries first (`cargo build --bins`; `make test` does)",
        path.display()
    );
    path
}

/// A service binary running as its own process, on `port`.
pub struct ServiceProcess {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    child: Child,
    log: Option<PathBuf>,
}

impl ServiceProcess {
    /// Starts `name` with `env` (a test context's environment plus overrides) on a free port.
    pub fn start(name: &str, env: &[(String, String)]) -> Self {
        Self::spawn(name, env, crate::closed_port(), None)
    }

    /// Like [`start`](Self::start), on `port`, with its log (stdout and stderr) appended to
    /// `log`, so a test can read what it said, and a restarted process keeps its address.
    pub fn start_logged(name: &str, env: &[(String, String)], port: u16, log: PathBuf) -> Self {
        Self::spawn(name, env, port, Some(log))
    }

    fn spawn(name: &str, env: &[(String, String)], port: u16, log: Option<PathBuf>) -> Self {
        let (stdout, stderr) = match &log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("service log file");
                let copy = file.try_clone().expect("service log file");
                (Stdio::from(file), Stdio::from(copy))
            }
            None => (Stdio::null(), Stdio::inherit()),
        };
        let child = Command::new(binary(name))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PLANTLINE_HTTP__PORT", port.to_string())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start service process");
        Self {
            address: format!("http://127.0.0.1:{port}"),
            child,
            log,
        }
    }

    /// Everything the process logged so far (empty unless started with a log).
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
    }

    /// Log lines at `level` (`WARN`, `ERROR`) that contain `text`.
    pub fn logged(&self, level: &str, text: &str) -> usize {
        let level = format!("\"level\":\"{level}\"");
        self.log_text()
            .lines()
            .filter(|line| line.contains(&level) && line.contains(text))
            .count()
    }

    /// Waits (at most `limit`) until `/readyz` answers 200.
    pub async fn until_ready(&self, limit: Duration) {
        let url = format!("{}/readyz", self.address);
        crate::eventually(limit, &format!("{url} ready"), || {
            let request = reqwest::Client::new()
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send();
            async move { request.await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
    }

    /// `GET /readyz` as JSON, once the process answers.
    pub async fn readiness(&self) -> Option<serde_json::Value> {
        let answer = reqwest::Client::new()
            .get(format!("{}/readyz", self.address))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        answer.json().await.ok()
    }

    /// Resident memory (VmRSS) of the process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("process status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// SIGTERM, as a supervisor stops a process, then waits at most `limit` for it to exit:
    /// how long it took and whether its exit status was success; `None` while it still
    /// runs at `limit` (it is then killed).
    pub async fn terminate(mut self, limit: Duration) -> Option<(Duration, bool)> {
        let started = std::time::Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some((started.elapsed(), status.success()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// `kill -9`: no drain, no flush, no goodbye.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback TCP proxy that holds every chunk coming back from `target` for a delay the test
/// sets at any time: a slow dependency, without touching the dependency. Counts the
/// connections open through it.
pub struct LatencyProxy {
    /// The port clients are pointed at.
    pub port: u16,
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most_open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    accepting: tokio::task::JoinHandle<()>,
}

impl LatencyProxy {
    /// Starts forwarding to `target` (`host:port`) with no delay.
    pub async fn start(target: &str) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy port");
        let port = listener.local_addr().expect("proxy address").port();
        let delay_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most_open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let target = target.to_owned();
        let (delay, counter, most) = (delay_ms.clone(), open.clone(), most_open.clone());
        let accepting = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let (target, delay, counter, most) =
                    (target.clone(), delay.clone(), counter.clone(), most.clone());
                connections.spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let now_open = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now_open, Ordering::SeqCst);
                    let (mut client_read, mut client_write) = inbound.into_split();
                    let (mut server_read, mut server_write) = outbound.into_split();
                    let upstream = tokio::io::copy(&mut client_read, &mut server_write);
                    let downstream = async {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buffer = vec![0u8; 16 * 1024];
                        loop {
                            let n = server_read.read(&mut buffer).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            let hold = delay.load(Ordering::SeqCst);
                            if hold > 0 {
                                tokio::time::sleep(Duration::from_millis(hold)).await;
                            }
                            client_write.write_all(&buffer[..n]).await?;
                        }
                    };
                    // Either side closing ends the connection, as a real network path would.
                    tokio::select! {
                        _ = upstream => {}
                        _ = downstream => {}
                    }
                    counter.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            port,
            delay_ms,
            open,
            most_open,
            accepting,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// From now on, every answer chunk waits `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(
            delay.as_millis() as u64,
            std::sync::atomic::Ordering::SeqCst,
        );
    }

    /// Connections open through the proxy now.
    pub fn open_connections(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The most connections ever open at once; resets the count.
    pub fn take_most_open(&self) -> usize {
        self.most_open
            .swap(self.open_connections(), std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}
