//! Scenario 14: the bridge's disk fills up while InfluxDB is away. The spool must stop
//! acknowledging, say why in `/readyz`, and free its segments once InfluxDB takes the backlog
//! — moving its checkpoint must not need a byte of new space.

use crate::influx::received;
use crate::support::{Route, Service, Stack, Summary, within};
use plantline_e2e::backing::Kind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A 256 KiB tmpfs mounted over a folder for the scenario's life: a disk that fills up.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path) -> Self {
        std::fs::create_dir_all(at).expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "plantline-test-disk"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            mounted,
            "scenario 14 mounts a small tmpfs as the bridge's disk and needs root (as `make test` runs in CI)"
        );
        Self(at.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros to `path` until the disk is full; how many bytes it took.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let Ok(mut file) = std::fs::File::create(path) else {
        return 0;
    };
    let chunk = [0u8; 4096];
    let mut written = 0;
    while file.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    written
}

#[tokio::test(flavor = "multi_thread")]
async fn s14_the_spool_disk_fills_up_and_frees_itself() {
    // Segments of 64 KiB and a cap far above the disk: the disk is what runs out.
    let env = [
        ("PLANTLINE_BRIDGE__SPOOL_SEGMENT_BYTES", "65536"),
        ("PLANTLINE_MQTT__MAX_PAYLOAD_BYTES", "16384"),
    ];
    let mut stack = Stack::start(Kind::Influx, Route::Direct, &env).await;
    let mut summary = Summary::new(14, "the bridge's disk full while InfluxDB is away");
    let influx = stack.ctx.influx();
    let mut device = stack.device().await;
    stack.kill(Service::Bridge);
    let disk = SmallDisk::mount(&stack.ctx.spool_dir.join("1"));
    stack.launch(Service::Bridge);
    let bridge = stack.process(Service::Bridge).address.clone();
    stack
        .process(Service::Bridge)
        .until_ready(Duration::from_secs(30))
        .await;
    device.publish(10).await;
    let flowing = device.all_stored(&influx, Duration::from_secs(20)).await;
    summary.check(
        flowing,
        "messages are stored with the spool on a 256 KiB disk",
    );

    stack.backing.stop().await;
    device.publish(700).await;
    let mut said = String::new();
    let refusing = within(Duration::from_secs(30), async || {
        let report = stack
            .process(Service::Bridge)
            .readiness()
            .await
            .unwrap_or_default();
        said = report["dependencies"]["spool"].to_string();
        said.contains("No space left")
    })
    .await;
    summary.check(refusing, format!("/readyz says why: {said}"));
    let before = received(&bridge).await;
    // Acknowledging stopped: nothing more is taken while the disk stays full.
    let still = !within(Duration::from_secs(3), || async {
        received(&bridge).await > before
    })
    .await;
    summary.check(
        still && before < 710,
        format!("the bridge stopped taking messages at {before} of 710; the broker keeps the rest"),
    );

    stack.backing.resume().await;
    let drained = device.all_stored(&influx, Duration::from_secs(90)).await;
    summary.check(
        drained,
        "InfluxDB back: the spool frees its segments and every message is stored",
    );
    let report = stack
        .process(Service::Bridge)
        .readiness()
        .await
        .unwrap_or_default();
    summary.check(
        report["dependencies"]["spool"]["status"] == "up",
        format!("/readyz is well again: {}", report["dependencies"]["spool"]),
    );

    // Something else fills the disk while the bridge has stored everything: no commit is
    // coming to free a segment, so the failing write itself must free the stored one.
    let filled = fill(&disk.0.join("filler"));
    device.publish(20).await;
    let resumed = device.all_stored(&influx, Duration::from_secs(30)).await;
    summary.check(
        resumed,
        format!(
            "another file took the last {filled} bytes while the spool was stored and idle: the 20 messages published then are stored too"
        ),
    );
    stack
        .check_stored(&mut summary, "MQTT", &device.machine, &device.acked, true)
        .await;
    stack.kill(Service::Bridge);
    drop(disk);
    summary.finish();
}
