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
}

impl Gate {
    /// A closed gate in front of `target` (`host:port`).
    pub fn closed(target: &str) -> Self {
        Self {
            port: crate::closed_port(),
            target: target.to_owned(),
            forwarding: None,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts forwarding.
    pub async fn open(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("gate port free again");
        let target = self.target.clone();
        self.forwarding = Some(tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
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

impl Drop for Gate {
    fn drop(&mut self) {
        self.close();
    }
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
}

impl ServiceProcess {
    /// Starts `name` with `env` (a test context's environment plus overrides) on a free port.
    pub fn start(name: &str, env: &[(String, String)]) -> Self {
        let port = crate::closed_port();
        let child = Command::new(binary(name))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PLANTLINE_HTTP__PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start service process");
        Self {
            address: format!("http://127.0.0.1:{port}"),
            child,
        }
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
