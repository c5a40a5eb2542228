//! A backing service of a test's own (PostgreSQL, Redis, Mosquitto or InfluxDB), started and
//! stopped by `deploy/local/backing.sh` — the script `make run` uses — with its own state
//! folder and port, so a fault test can take it away without touching anyone else's.

use crate::workspace_root;
use std::path::PathBuf;
use std::process::Stdio;

/// Which service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// PostgreSQL: a cluster of its own (initdb), trusting loopback.
    Postgres,
    /// Redis, keeping nothing on disk.
    Redis,
    /// Mosquitto with Plantline's settings (persistent sessions).
    Mosquitto,
    /// InfluxDB 1.x.
    Influx,
}

impl Kind {
    fn script_name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Redis => "redis",
            Self::Mosquitto => "mosquitto",
            Self::Influx => "influxdb",
        }
    }
}

/// A running (or stopped) private instance; stopped and its folder removed on drop.
pub struct PrivateBacking {
    /// Which service.
    pub kind: Kind,
    /// Its loopback port.
    pub port: u16,
    dir: PathBuf,
    ports: Vec<(&'static str, String)>,
}

impl PrivateBacking {
    /// Starts one on a free port (outside the ephemeral range, so nobody takes the port while
    /// the service is stopped).
    pub async fn start(kind: Kind) -> Self {
        let port = crate::net::stable_port();
        let dir = std::env::temp_dir().join(format!(
            "plantline-test-{}-{}",
            kind.script_name(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("backing state folder");
        // Reachable by PostgreSQL's own user, which owns its data folder below.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("state folder permissions");
        let ports = match kind {
            Kind::Postgres => vec![("PLANTLINE_PORT_POSTGRES", port.to_string())],
            Kind::Redis => vec![("PLANTLINE_PORT_REDIS", port.to_string())],
            Kind::Mosquitto => vec![("PLANTLINE_PORT_MQTT", port.to_string())],
            Kind::Influx => vec![
                ("PLANTLINE_PORT_INFLUX", port.to_string()),
                (
                    "PLANTLINE_PORT_INFLUX_RPC",
                    crate::net::stable_port().to_string(),
                ),
            ],
        };
        let backing = Self {
            kind,
            port,
            dir,
            ports,
        };
        backing.resume().await;
        backing
    }

    /// The URL services use to reach it.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Postgres => format!("postgres://postgres@127.0.0.1:{}", self.port),
            Kind::Redis => format!("redis://127.0.0.1:{}/0", self.port),
            Kind::Mosquitto => format!("tcp://127.0.0.1:{}", self.port),
            Kind::Influx => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// `backing.sh stop <service>`: a graceful stop (Mosquitto saves its sessions).
    pub async fn stop(&self) {
        self.script("stop").await;
    }

    /// `backing.sh start <service>`: returns once it accepts connections.
    pub async fn resume(&self) {
        self.script("start").await;
    }

    /// The service's own log (for a failure message).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(
            self.dir
                .join("logs")
                .join(format!("{}.log", self.kind.script_name())),
        )
        .unwrap_or_default();
        let start = log.len().saturating_sub(2000);
        log[log.ceil_char_boundary(start)..].to_owned()
    }

    async fn script(&self, action: &'static str) {
        let mut command = self.command(action);
        let status = tokio::task::spawn_blocking(move || command.status())
            .await
            .expect("backing.sh runner")
            .expect("run deploy/local/backing.sh");
        assert!(
            status.success(),
            "backing.sh {action} {} failed: {}",
            self.kind.script_name(),
            self.log_tail()
        );
    }

    fn command(&self, action: &str) -> std::process::Command {
        let mut command =
            std::process::Command::new(workspace_root().join("deploy/local/backing.sh"));
        command
            .arg(action)
            .arg(self.kind.script_name())
            .env("PLANTLINE_STATE_DIR", &self.dir)
            .envs(self.ports.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        command
    }
}

impl Drop for PrivateBacking {
    fn drop(&mut self) {
        let _ = self.command("stop").stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
