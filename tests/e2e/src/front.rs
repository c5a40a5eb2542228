//! nginx in front of a test's services, rendered from the same template as every
//! deployment, on its own port and folder, so browser tests see one origin as users do.

use crate::{closed_port, eventually, workspace_root};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running nginx; stopped and its folder removed on drop.
pub struct Front {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    dir: PathBuf,
    child: Child,
}

/// `host:port` of each upstream service (an unused port for any the test does not run).
pub struct Upstreams<'a> {
    /// auth.
    pub auth: &'a str,
    /// ingest-api.
    pub ingest: &'a str,
    /// query-api.
    pub query: &'a str,
}

impl Front {
    /// What nginx logged of the requests so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// Renders the template and starts nginx; returns once it answers `/healthz`.
    pub async fn start(upstreams: Upstreams<'_>) -> Self {
        let port = closed_port();
        let dir = std::env::temp_dir().join(format!(
            "plantline-test-nginx-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).expect("nginx folder");
        // Workers drop privileges when started as root; they buffer bodies here.
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
            .expect("tmp permissions");
        let unused = format!("127.0.0.1:{}", closed_port());
        let template =
            std::fs::read_to_string(workspace_root().join("deploy/nginx/plantline.conf.template"))
                .expect("nginx template");
        let routes = [
            ("${PLANTLINE_LISTEN}", format!("127.0.0.1:{port}")),
            ("${AUTH_UPSTREAM}", upstreams.auth.to_owned()),
            ("${INGEST_UPSTREAM}", upstreams.ingest.to_owned()),
            ("${QUERY_UPSTREAM}", upstreams.query.to_owned()),
            ("${BRIDGE_UPSTREAM}", unused),
            (
                "${NGINX_ACCESS_LOG}",
                dir.join("access.log").display().to_string(),
            ),
        ]
        .iter()
        .fold(template, |text, (placeholder, value)| {
            text.replace(placeholder, value)
        });
        std::fs::write(dir.join("plantline.conf"), routes).expect("write routes");
        let tmp = tmp.display();
        let main = format!(
            "worker_processes 1;\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
             events {{ worker_connections 512; }}\nhttp {{\n  client_body_temp_path {tmp}/body;\n  \
             proxy_temp_path {tmp}/proxy;\n  fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n  \
             scgi_temp_path {tmp}/scgi;\n  include {dir}/plantline.conf;\n}}\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), main).expect("write nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx (`make test` installs nginx-light)");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        eventually(Duration::from_secs(10), "nginx answers /healthz", || {
            let request = client.get(format!("{url}/healthz")).send();
            async move { request.await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
        Self { url, dir, child }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        // TERM, not KILL: a killed master would leave its worker holding the port.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
