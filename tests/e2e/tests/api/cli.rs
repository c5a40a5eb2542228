//! Every binary explains itself: `--help` and `--version` answer with no environment at all,
//! and a wrong argument is a usage error naming it, not a start with defaults.

use plantline_e2e::net::binary;
use std::process::Command;

const BINARIES: [&str; 7] = [
    "auth",
    "ingest-api",
    "query-api",
    "mqtt-bridge",
    "plantline-admin",
    "plantline-sim",
    "plantline-bench",
];

fn run(name: &str, args: &[&str]) -> std::process::Output {
    Command::new(binary(name))
        .args(args)
        .env_clear()
        .output()
        .expect("run the binary")
}

#[test]
fn every_binary_answers_help_and_version_without_an_environment() {
    for name in BINARIES {
        let help = run(name, &["--help"]);
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(help.status.success(), "{name} --help: {help:?}");
        assert!(text.contains("Usage:"), "{name} --help: {text}");
        let version = run(name, &["--version"]);
        assert!(version.status.success(), "{name} --version: {version:?}");
        assert_eq!(
            String::from_utf8_lossy(&version.stdout).trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION")),
        );
        let wrong = run(name, &["--no-such-flag"]);
        assert_eq!(wrong.status.code(), Some(2), "{name}: {wrong:?}");
        assert!(
            String::from_utf8_lossy(&wrong.stderr).contains("--no-such-flag"),
            "{name}: {wrong:?}"
        );
    }
}
