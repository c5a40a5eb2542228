//! The births the host state rests on, kept on disk at each commit of the spool. A restart
//! replays the spool from its checkpoint; the births before the checkpoint are no longer in
//! it, so without these the aliases of the replayed data could not be named, and data the
//! bridge acknowledged would be lost.
//!
//! One file per edge node (`<node>.n`) and per device (`<node>.<device>.d`), names in hex;
//! each holds the topic, the receive time and the payload. A node's birth drops its devices'.

use crate::spool::Record;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Births {
    dir: PathBuf,
    /// Births decoded since the last commit, in order.
    pending: Vec<Record>,
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// `(node file stem, device)` of a birth topic `…spBv1.0/{group}/{N|D}BIRTH/{edge}[/{device}]`.
fn names(topic: &str) -> Option<(String, Option<String>)> {
    let mut parts = topic.rsplitn(4, '/');
    let last = parts.next()?;
    let third = parts.next()?;
    let second = parts.next()?;
    let rest = parts.next()?;
    if second == "DBIRTH" {
        // rest = "…spBv1.0/{group}": the group is its last segment.
        let group = rest.rsplit('/').next()?;
        Some((hex(&format!("{group}/{third}")), Some(hex(last))))
    } else if third == "NBIRTH" {
        let group = second;
        Some((hex(&format!("{group}/{last}")), None))
    } else {
        None
    }
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

    /// A birth was decoded; it is kept at the next commit.
    pub fn note(&mut self, record: &Record) {
        self.pending.push(record.clone());
    }

    /// Writes the births noted since the last call (before the spool commits past them).
    /// A failure is logged: a restart then asks the edge nodes for births instead.
    pub fn keep(&mut self) {
        for record in std::mem::take(&mut self.pending) {
            if let Err(err) = self.write(&record) {
                tracing::warn!(error = %err, topic = %record.topic, "Sparkplug birth not kept; a restart will ask for a rebirth");
            }
        }
    }

    fn write(&self, record: &Record) -> std::io::Result<()> {
        let Some((node, device)) = names(&record.topic).filter(|_| !record.topic.contains('\n'))
        else {
            return Ok(());
        };
        let file = match &device {
            Some(device) => format!("{node}.{device}.d"),
            None => {
                // The node was born again: its devices must be too.
                for entry in std::fs::read_dir(&self.dir)?.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with(&format!("{node}.")) && name.ends_with(".d") {
                        std::fs::remove_file(entry.path())?;
                    }
                }
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
        births.note(&record("p/spBv1.0/A/NBIRTH/edge", b"n1\n\x00"));
        births.note(&record("p/spBv1.0/A/DBIRTH/edge/press", b"d1"));
        births.note(&record("p/spBv1.0/B/NBIRTH/edge", b"other"));
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

        births.note(&record("p/spBv1.0/A/NBIRTH/edge", b"n2"));
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
