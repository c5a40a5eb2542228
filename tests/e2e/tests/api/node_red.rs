//! The Node-RED flow the README documents (`proto-docs/node-red-flow.json`), run by Node-RED
//! with node-red-contrib-influxdb, both unchanged, against Plantline through nginx: its 1.x
//! output (node-influx: `u`/`p` in the query) and its 2.0 output (InfluxDB's JS client:
//! `Token <client id>:<secret>`), with the gateway's id and secret.

use domain::MachineStatus;
use plantline_e2e::front::{Front, Upstreams};
use plantline_e2e::{TestContext, closed_port, workspace_root};
use platform::ServiceName;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Node-RED in a folder of its own; killed and the folder removed on drop.
struct NodeRed {
    child: Child,
    dir: PathBuf,
}

impl NodeRed {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node-red.log")).unwrap_or_default()
    }
}

impl Drop for NodeRed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The documented flow, pointed at `front` (host and port of both config nodes) and the
/// test's `database`, with its function wired to both outputs.
fn flow_for(front: &str, database: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(workspace_root().join("proto-docs/node-red-flow.json"))
        .expect("the documented flow");
    let mut flow: Vec<Value> = serde_json::from_str(&text).expect("the flow is JSON");
    let (host, port) = front
        .trim_start_matches("http://")
        .split_once(':')
        .expect("host:port");
    for node in &mut flow {
        match node["id"].as_str() {
            Some("plantline.server.v1" | "plantline.server.v2") => {
                node["hostname"] = json!(host);
                node["port"] = json!(port);
                node["url"] = json!(front);
                node["database"] = json!(database);
            }
            Some("plantline.write.v1" | "plantline.write.v2") => {
                node["database"] = json!(database);
                node["bucket"] = json!(database);
            }
            Some("plantline.reading") => {
                node["wires"] = json!([["plantline.write.v1", "plantline.write.v2"]]);
            }
            _ => {}
        }
    }
    flow
}

fn start_node_red(flow: &[Value], credentials: &Value, machine: uuid::Uuid) -> NodeRed {
    let red = workspace_root().join("tests/interop/node-red/node_modules/node-red/red.js");
    assert!(
        red.exists(),
        "Node-RED is not installed: `make test` installs it (make node-red-deps)"
    );
    let dir = std::env::temp_dir().join(format!(
        "plantline-test-node-red-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("Node-RED folder");
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).expect("Node-RED file");
    };
    write("flows.json", Value::from(flow.to_vec()).to_string());
    write("flows_cred.json", credentials.to_string());
    // Plain credentials (the file above), the editor on loopback only, no tours or telemetry.
    write(
        "settings.js",
        format!(
            "module.exports = {{ uiHost: '127.0.0.1', uiPort: {}, flowFile: 'flows.json', \
             credentialSecret: false, editorTheme: {{ tours: false }}, \
             diagnostics: {{ enabled: false }}, telemetry: {{ enabled: false }}, \
             logging: {{ console: {{ level: 'info' }} }} }};\n",
            closed_port()
        ),
    );
    let log = std::fs::File::create(dir.join("node-red.log")).expect("log file");
    let child = Command::new("node")
        .arg(&red)
        .arg("--userDir")
        .arg(&dir)
        .arg("--settings")
        .arg(dir.join("settings.js"))
        .env("PLANTLINE_MACHINE_ID", machine.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("start Node-RED (node from Debian's nodejs)");
    NodeRed { child, dir }
}

#[tokio::test]
async fn the_documented_node_red_flow_writes_through_both_influxdb_apis() {
    let ctx = TestContext::new().await;
    let gateway = ctx.create_gateway().await;
    let machine = ctx.create_machine(MachineStatus::Active).await;
    let ingest = ctx.spawn(ServiceName::IngestApi).await;
    let unused = format!("127.0.0.1:{}", closed_port());
    let front = Front::start(Upstreams {
        auth: &unused,
        ingest: &format!("127.0.0.1:{}", ingest.port),
        query: &unused,
    })
    .await;
    let flow = flow_for(&front.url, &ctx.settings.influx.database);
    let credentials = json!({
        "plantline.server.v1": {"username": gateway.client_id, "password": gateway.secret},
        "plantline.server.v2": {"token": format!("{}:{}", gateway.client_id, gateway.secret)},
    });
    let node_red = start_node_red(&flow, &credentials, machine);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored_through = |endpoint: &'static str| {
            let ingest = &ingest;
            async move {
                let label = format!(r#"endpoint="{endpoint}",outcome="stored""#);
                ingest
                    .metric("plantline_ingest_readings_total", &label)
                    .await
            }
        };
        if stored_through("/write").await >= 1.0 && stored_through("/api/v2/write").await >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Node-RED's writes did not arrive through both APIs.\nNode-RED said:\n{}\nnginx:\n{}",
            node_red.log(),
            front.access_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Rows: time, factory_id, location, machine_id, sensor_type, temperature, pressure, speed.
    let points = ctx.influx_points().await;
    let mine: Vec<&Value> = points
        .iter()
        .filter(|p| p[3] == machine.to_string())
        .collect();
    assert!(mine.len() >= 2, "{points:?}");
    assert!(
        mine.iter()
            .all(|p| p[2] == "Hall 1" && (70.0..=75.0).contains(&p[5].as_f64().unwrap_or(0.0))),
        "the registry's tags and the flow's values: {mine:?}"
    );
    let log = front.access_log();
    assert!(
        !log.contains(&gateway.secret),
        "node-influx sends `p=` in the query; nginx must not log it: {log}"
    );
}
