//! The births the host state rests on, kept on disk at each commit of the spool. A restart
//! replays the spool from its checkpoint; the births before the checkpoint are no longer in
//! it, so without these the aliases of the replayed data could not be named, and data the
//! bridge acknowledged would be lost.
//!
//! One file per edge node (`<node>.n`) and per device (`<node>.<device>.d`), named by
//! SHA-256 digests of the ids (bounded length, whatever the ids); each holds the topic, the
//! receive time and the payload. A node's birth drops its devices'. A birth that cannot be
//! written drops its node's files: a restart then knows nothing of the node and asks it for
//! a rebirth, rather than naming data with births older than the spool's.
//!
//! The births are written just before the spool commits past them. A crash between the two
//! replays the batch with its own births already loaded: its data before them is named with
//! the new aliases, which differ only when a rebirth changed the alias map.

use crate::spool::Record;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Births {
    dir: PathBuf,
    /// Births decoded since the last commit, in order, with their file stems.
    pending: Vec<(Record, String, Option<String>)>,
}

fn digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Births {
    /// Keeps births in `dir` (created when missing).
    pub fn open(dir: impl AsRef<Path>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.as_ref())?;
        Ok(Self {
            dir: dir.as_ref().to_owned(),
            pending: Vec::new(),
        })
    }

    /// The host took this birth (of `group`/`edge_node`, and `device` for a DBIRTH); it is
    /// kept at the next commit.
    pub fn note(&mut self, record: &Record, group: &str, edge_node: &str, device: Option<&str>) {
        let node = digest(&format!("{group}/{edge_node}"));
        self.pending
            .push((record.clone(), node, device.map(digest)));
    }

    /// Writes the births noted since the last call (before the spool commits past them).
    /// A node whose birth cannot be written loses its files (see the module's notes).
    pub fn keep(&mut self) {
        for (record, node, device) in std::mem::take(&mut self.pending) {
            if let Err(err) = self.write(&record, &node, device.as_deref()) {
                tracing::warn!(error = %err, topic = %record.topic, "Sparkplug birth not kept; a restart will ask the edge node for a rebirth");
                if let Err(err) = self.forget(&node, false) {
                    tracing::error!(error = %err, "stale Sparkplug births could not be removed");
                }
            }
        }
    }

    /// Removes the node's device files, and its own too unless `devices_only`.
    fn forget(&self, node: &str, devices_only: bool) -> std::io::Result<()> {
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let device = name.starts_with(&format!("{node}.")) && name.ends_with(".d");
            if device || (!devices_only && name == format!("{node}.n")) {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    fn write(&self, record: &Record, node: &str, device: Option<&str>) -> std::io::Result<()> {
        if record.topic.contains('\n') {
            return Ok(());
        }
        let file = match device {
            Some(device) => format!("{node}.{device}.d"),
            None => {
                // The node was born again: its devices must be too.
                self.forget(node, true)?;
                format!("{node}.n")
            }
        };
        let temporary = self.dir.join(format!("{file}.tmp"));
        let mut out = std::fs::File::create(&temporary)?;
        writeln!(out, "{}", record.topic)?;
        writeln!(out, "{}", record.received_ms)?;
        out.write_all(&record.payload)?;
        out.sync_all()?;
        std::fs::rename(&temporary, self.dir.join(file))
    }

    /// Every kept birth, nodes before devices.
    pub fn load(&self) -> Vec<Record> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "n" || e == "d"))
            .collect();
        files.sort_by_key(|p| (p.extension().is_some_and(|e| e == "d"), p.clone()));
        files.iter().filter_map(|path| read(path)).collect()
    }
}

fn read(path: &Path) -> Option<Record> {
    let bytes = std::fs::read(path).ok()?;
    let mut lines = bytes.splitn(3, |b| *b == b'\n');
    let topic = String::from_utf8(lines.next()?.to_vec()).ok()?;
    let received_ms = std::str::from_utf8(lines.next()?).ok()?.parse().ok()?;
    Some(Record {
        topic,
        payload: lines.next().unwrap_or_default().to_vec(),
        received_ms,
        truncated_from: None,
        traceparent: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &str, payload: &[u8]) -> Record {
        Record {
            topic: topic.to_owned(),
            payload: payload.to_vec(),
            received_ms: 7,
            truncated_from: None,
            traceparent: None,
        }
    }

    #[test]
    fn births_survive_a_restart_and_a_node_birth_drops_its_devices() {
        let dir = std::env::temp_dir().join(format!("plantline-births-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut births = Births::open(&dir).unwrap();
        births.note(
            &record("p/spBv1.0/A/NBIRTH/edge", b"n1\n\x00"),
            "A",
            "edge",
            None,
        );
        births.note(
            &record("p/spBv1.0/A/DBIRTH/edge/press", b"d1"),
            "A",
            "edge",
            Some("press"),
        );
        births.note(
            &record("p/spBv1.0/B/NBIRTH/edge", b"other"),
            "B",
            "edge",
            None,
        );
        births.keep();
        let loaded = Births::open(&dir).unwrap().load();
        assert_eq!(loaded.len(), 3);
        assert!(
            loaded[2].topic.ends_with("DBIRTH/edge/press"),
            "devices last"
        );
        assert!(
            loaded
                .iter()
                .any(|r| r.payload == b"n1\n\x00" && r.received_ms == 7)
        );

        births.note(&record("p/spBv1.0/A/NBIRTH/edge", b"n2"), "A", "edge", None);
        births.keep();
        let loaded = births.load();
        assert_eq!(
            loaded.len(),
            2,
            "the device's birth went with the node's new one"
        );
        assert!(loaded.iter().any(|r| r.payload == b"n2"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
