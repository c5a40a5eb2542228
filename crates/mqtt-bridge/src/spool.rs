//! The spool: every telemetry message is appended here, inside paho's message callback, before
//! the broker gets its PUBACK (paho C sends it when the callback returns). A `kill -9` therefore
//! never loses an acknowledged message: the bytes are in the kernel's page cache, and the
//! fsync policy decides how much a power cut may take (`interval`: up to `fsync_interval_ms`;
//! `always`: nothing).
//!
//! Layout: numbered segment files (`00000000000000000001.seg`, …) of checksummed records and a
//! `checkpoint` naming the position up to which everything is stored in InfluxDB. The writer
//! appends to the last segment; one reader replays from the checkpoint in order; a commit moves
//! the checkpoint and deletes the segments behind it. When the spool reaches its size bound
//! the writer waits (the broker keeps the messages) instead of growing without end.
//!
//! Record: `len: u32 LE | crc32(body): u32 LE | body`, body =
//! `flags: u8 | received_ms: i64 LE | original_len: u32 LE | topic_len: u16 LE | topic |
//! [traceparent_len: u8 | traceparent, when flagged] | payload`.
//! A damaged record (bad length or checksum) anywhere is skipped: reading resynchronises at
//! the next offset where a whole record with a matching checksum starts, so one bad record
//! never costs the good ones after it; the bytes skipped are counted. Only the tail of the
//! newest segment after its last intact record (a write torn by a crash) is cut off at start.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod checkpoint;
use checkpoint::Checkpoint;

const HEADER: usize = 8;
const BODY_FIXED: usize = 1 + 8 + 4 + 2;
const FLAG_TRUNCATED: u8 = 1;
/// A W3C `traceparent` (from an MQTT 5 user property) follows the topic.
const FLAG_TRACED: u8 = 2;

/// A spool that cannot be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Another process holds the folder (two bridges must never share a spool).
    #[error("spool {0} is in use by another bridge process; give each bridge its own folder")]
    InUse(PathBuf),
    /// A file operation failed.
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where a record ends: segment number and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    /// Byte offset inside the segment.
    pub offset: u64,
}

/// One spooled MQTT message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    /// The payload (its first `max_payload_bytes` when it was larger).
    pub payload: Vec<u8>,
    /// When the bridge received it (Unix milliseconds).
    pub received_ms: i64,
    /// The payload's real size when only its head was kept.
    pub truncated_from: Option<u32>,
    /// The publisher's W3C trace context, when it sent one (MQTT 5 user property).
    pub traceparent: Option<String>,
}

impl Record {
    fn encode(
        topic: &str,
        payload: &[u8],
        keep: usize,
        received_ms: i64,
        traceparent: Option<&str>,
    ) -> Vec<u8> {
        let kept = &payload[..payload.len().min(keep)];
        let topic = &topic.as_bytes()[..topic.len().min(u16::MAX as usize)];
        // A traceparent is 55 bytes; anything past a byte's worth is not one.
        let trace = traceparent
            .map(str::as_bytes)
            .filter(|t| t.len() <= usize::from(u8::MAX));
        let trace_len = trace.map_or(0, |t| 1 + t.len());
        let body_len = BODY_FIXED + topic.len() + trace_len + kept.len();
        let mut out = Vec::with_capacity(HEADER + body_len);
        out.extend_from_slice(&(body_len as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        let mut flags = 0;
        if kept.len() < payload.len() {
            flags |= FLAG_TRUNCATED;
        }
        if trace.is_some() {
            flags |= FLAG_TRACED;
        }
        out.push(flags);
        out.extend_from_slice(&received_ms.to_le_bytes());
        out.extend_from_slice(&(payload.len().min(u32::MAX as usize) as u32).to_le_bytes());
        out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        out.extend_from_slice(topic);
        if let Some(trace) = trace {
            out.push(trace.len() as u8);
            out.extend_from_slice(trace);
        }
        out.extend_from_slice(kept);
        let crc = crc32fast::hash(&out[HEADER..]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(body: &[u8]) -> Option<Self> {
        let flags = *body.first()?;
        let received_ms = i64::from_le_bytes(body.get(1..9)?.try_into().ok()?);
        let original_len = u32::from_le_bytes(body.get(9..13)?.try_into().ok()?);
        let topic_len = u16::from_le_bytes(body.get(13..15)?.try_into().ok()?) as usize;
        let topic = std::str::from_utf8(body.get(BODY_FIXED..BODY_FIXED + topic_len)?).ok()?;
        let mut at = BODY_FIXED + topic_len;
        let traceparent = if flags & FLAG_TRACED != 0 {
            let len = usize::from(*body.get(at)?);
            let trace = std::str::from_utf8(body.get(at + 1..at + 1 + len)?).ok()?;
            at += 1 + len;
            Some(trace.to_owned())
        } else {
            None
        };
        Some(Self {
            topic: topic.to_owned(),
            payload: body.get(at..)?.to_vec(),
            received_ms,
            truncated_from: (flags & FLAG_TRUNCATED != 0).then_some(original_len),
            traceparent,
        })
    }
}

/// How full the spool is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SpoolStats {
    /// Bytes not yet stored in InfluxDB.
    pub pending_bytes: u64,
    /// Messages not yet stored in InfluxDB.
    pub pending_messages: u64,
    pub max_bytes: u64,
    /// Whether the writer is waiting for room (messages are not being acknowledged).
    pub full: bool,
    /// Bytes of damaged records skipped since the bridge started.
    pub damaged_bytes_skipped: u64,
    /// Why writing to disk fails, while it does (nothing is acknowledged meanwhile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_error: Option<String>,
}

/// Size bound, segment size and fsync policy.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// The folder (created if missing).
    pub dir: PathBuf,
    /// Total bytes of all segments before the writer waits.
    pub max_bytes: u64,
    pub segment_bytes: u64,
    /// fsync every record before it is acknowledged.
    pub fsync_always: bool,
    /// Payload bytes kept per record (larger messages are dead-lettered anyway).
    pub max_payload_bytes: usize,
}

struct State {
    active: u64,
    active_file: Arc<File>,
    /// Bytes of every segment on disk, by number.
    sizes: BTreeMap<u64, u64>,
    /// Their sum.
    total_bytes: u64,
    checkpoint: Position,
    pending_messages: u64,
    full: bool,
    dirty: bool,
    /// The last write's failure while writes fail (a full disk, an I/O error).
    write_error: Option<String>,
}

struct Shared {
    config: SpoolConfig,
    /// Held (flock) for the process's lifetime; the kernel releases it even on `kill -9`.
    _lock: File,
    /// Only the pipeline commits; kept apart from `state` so a commit never holds up the writer.
    checkpoint: Mutex<Checkpoint>,
    state: Mutex<State>,
    room: Condvar,
    appended: tokio::sync::Notify,
    closing: AtomicBool,
    /// Bytes of damaged records the reader skipped since start.
    damaged_bytes: AtomicU64,
}

/// The writing and committing side (cheap to clone).
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.seg"))
}

/// What a walk over a segment's bytes found.
#[derive(Debug, Default, PartialEq, Eq)]
struct Walk {
    /// Intact records.
    count: u64,
    /// Offset (in the walked bytes) right after the last intact record.
    end: usize,
    /// Bytes between intact records that belong to none.
    skipped: u64,
}

/// The length of the intact record starting at `at` in `bytes`, if one does.
fn record_at(bytes: &[u8], at: usize) -> Option<usize> {
    let header = bytes.get(at..at + HEADER)?;
    let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if body_len < BODY_FIXED {
        return None;
    }
    let body = bytes.get(at + HEADER..(at + HEADER).checked_add(body_len)?)?;
    (crc32fast::hash(body) == crc && Record::decode(body).is_some()).then_some(HEADER + body_len)
}

/// The first offset at or after `from` where an intact record starts.
fn resync(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len().saturating_sub(HEADER - 1)).find(|at| record_at(bytes, *at).is_some())
}

/// Walks every intact record of `bytes`, skipping damage in between.
fn walk(bytes: &[u8]) -> Walk {
    let mut walked = Walk::default();
    let mut at = 0;
    while at < bytes.len() {
        match record_at(bytes, at) {
            Some(len) => {
                at += len;
                walked.count += 1;
                walked.end = at;
            }
            None => match resync(bytes, at + 1) {
                Some(next) => {
                    walked.skipped += (next - at) as u64;
                    at = next;
                }
                None => break,
            },
        }
    }
    walked
}

/// Reads one record starting at `at` into `body`; `None` when there is no whole, intact record
/// before `limit`.
fn read_record(
    reader: &mut impl Read,
    body: &mut Vec<u8>,
    at: u64,
    limit: u64,
) -> std::io::Result<Option<usize>> {
    if at + HEADER as u64 > limit {
        return Ok(None);
    }
    let mut header = [0u8; HEADER];
    reader.read_exact(&mut header)?;
    let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if body_len < BODY_FIXED || at + (HEADER + body_len) as u64 > limit {
        return Ok(None);
    }
    body.resize(body_len, 0);
    reader.read_exact(body)?;
    Ok((crc32fast::hash(body) == crc).then_some(body_len))
}

/// Creates the folder and takes its lock, refusing a folder another bridge holds.
fn lock_dir(dir: &Path) -> Result<File, SpoolError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let lock_path = dir.join("lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_error(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(SpoolError::InUse(dir.to_owned())),
        Err(std::fs::TryLockError::Error(source)) => Err(SpoolError::Io {
            path: lock_path,
            source,
        }),
    }
}

/// The numbers of the segment files in `dir`, ascending.
fn list_segments(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        if let Some(number) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            segments.push(number);
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// Where replay starts: the stored checkpoint, or the start of the oldest segment.
fn start_checkpoint(stored: Option<Position>, segments: &[u64], first: u64) -> Position {
    let oldest = Position {
        segment: first,
        offset: 0,
    };
    match stored {
        // The checkpoint's segment was already deleted (its rename reached the disk after the
        // deletion did): everything before `first` is stored.
        Some(c) if c.segment < first || !segments.contains(&c.segment) => oldest,
        Some(c) => c,
        None => oldest,
    }
}

/// What start-up found on disk.
#[derive(Default)]
struct Recovered {
    /// Each remaining segment's size.
    sizes: BTreeMap<u64, u64>,
    /// Messages still to replay.
    pending_messages: u64,
}

/// Deletes the segments behind the checkpoint, counts what the others hold and cuts a torn
/// tail off the newest.
fn recover_segments(
    dir: &Path,
    segments: &[u64],
    checkpoint: Position,
) -> Result<Recovered, SpoolError> {
    let mut recovered = Recovered::default();
    for &segment in segments {
        let path = segment_path(dir, segment);
        if segment < checkpoint.segment {
            fs::remove_file(&path).map_err(io_error(&path))?;
            continue;
        }
        let from = if segment == checkpoint.segment {
            checkpoint.offset
        } else {
            0
        };
        let newest = Some(&segment) == segments.last();
        let (walked, size) = recover_segment(&path, from, newest)?;
        recovered.pending_messages += walked.count;
        recovered.sizes.insert(segment, size);
    }
    Ok(recovered)
}

/// Counts the intact records of one segment from `from` (skipping damage between them) and,
/// in the newest segment only, cuts off what follows the last one; returns the walk and the
/// segment's length.
fn recover_segment(path: &Path, from: u64, newest: bool) -> Result<(Walk, u64), SpoolError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_error(path))?;
    let len = file.metadata().map_err(io_error(path))?.len();
    let from = from.min(len);
    let mut bytes = Vec::with_capacity((len - from) as usize);
    file.seek(SeekFrom::Start(from))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(io_error(path))?;
    let walked = walk(&bytes);
    if walked.skipped > 0 {
        tracing::error!(
            segment = %path.display(),
            skipped_bytes = walked.skipped,
            "spool: damaged records skipped; every intact record after them will be replayed"
        );
    }
    let end = from + walked.end as u64;
    if newest && end < len {
        tracing::warn!(
            segment = %path.display(),
            discarded_bytes = len - end,
            "spool: torn record at the end of the newest segment cut off (written but never acknowledged)"
        );
        file.set_len(end).map_err(io_error(path))?;
        file.sync_all().map_err(io_error(path))?;
        return Ok((walked, end));
    }
    Ok((walked, len))
}

impl Spool {
    /// Opens (or creates) the spool, cuts torn tails and returns it with a reader positioned
    /// at the checkpoint.
    pub fn open(config: SpoolConfig) -> Result<(Self, SpoolReader), SpoolError> {
        let dir = config.dir.clone();
        let lock = lock_dir(&dir)?;
        let segments = list_segments(&dir)?;
        let first = segments.first().copied().unwrap_or(1);
        let (checkpoint_file, stored) = Checkpoint::open(&dir)?;
        let mut checkpoint = start_checkpoint(stored, &segments, first);
        let Recovered {
            mut sizes,
            pending_messages,
        } = recover_segments(&dir, &segments, checkpoint)?;
        checkpoint.offset = checkpoint
            .offset
            .min(sizes.get(&checkpoint.segment).copied().unwrap_or(0));
        let active = sizes.keys().next_back().copied().unwrap_or(first);
        let path = segment_path(&dir, active);
        let active_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        sizes.entry(active).or_insert(0);
        if pending_messages > 0 {
            tracing::info!(
                pending_messages,
                from_segment = checkpoint.segment,
                "spool: replaying messages not yet stored in InfluxDB"
            );
        }
        let shared = Arc::new(Shared {
            config,
            _lock: lock,
            checkpoint: Mutex::new(checkpoint_file),
            state: Mutex::new(State {
                active,
                active_file: Arc::new(active_file),
                total_bytes: sizes.values().sum(),
                sizes,
                checkpoint,
                pending_messages,
                full: false,
                dirty: false,
                write_error: None,
            }),
            room: Condvar::new(),
            appended: tokio::sync::Notify::new(),
            closing: AtomicBool::new(false),
            damaged_bytes: AtomicU64::new(0),
        });
        let reader = SpoolReader {
            shared: shared.clone(),
            position: checkpoint,
            file: None,
            body: Vec::new(),
            known_limit: 0,
        };
        Ok((Self { shared }, reader))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends one message; returns once its bytes are written (and fsynced under the
    /// `always` policy). Waits while the spool is full; never gives up, because returning
    /// lets paho acknowledge the message.
    pub fn append(&self, topic: &str, payload: &[u8], received_ms: i64) {
        self.append_traced(topic, payload, received_ms, None);
    }

    /// [`append`](Self::append), keeping the publisher's `traceparent` with the message.
    pub fn append_traced(
        &self,
        topic: &str,
        payload: &[u8],
        received_ms: i64,
        traceparent: Option<&str>,
    ) {
        let config = &self.shared.config;
        let record = Record::encode(
            topic,
            payload,
            config.max_payload_bytes,
            received_ms,
            traceparent,
        );
        let len = record.len() as u64;
        let mut state = self.lock();
        let mut waiting_since: Option<Instant> = None;
        loop {
            let total = state.total_bytes;
            // While shutting down, overshoot the bound rather than block the exit.
            if total + len <= config.max_bytes || self.shared.closing.load(Ordering::Relaxed) {
                break;
            }
            if !state.full {
                state.full = true;
                tracing::error!(
                    spool_bytes = total,
                    max_bytes = config.max_bytes,
                    "spool full: not acknowledging MQTT messages until InfluxDB takes the backlog (the broker keeps them)"
                );
            }
            waiting_since.get_or_insert_with(Instant::now);
            state = self
                .shared
                .room
                .wait_timeout(state, Duration::from_secs(1))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        if state.full {
            state.full = false;
            tracing::info!(
                waited_ms = waiting_since.map_or(0, |t| t.elapsed().as_millis() as u64),
                "spool has room again; acknowledging messages"
            );
        }
        // Never given up, not even at a stop: returning would acknowledge a message that is
        // not on disk. (At a stop the goodbye then cannot be sent; the broker publishes the
        // last will instead.)
        while let Err(err) = self.write_record(&mut state, &record) {
            if state.write_error.is_none() {
                tracing::error!(error = %err, "spool write failed: not acknowledging MQTT messages until it succeeds (the broker keeps them)");
            }
            state.write_error = Some(err.to_string());
            // Everything may be stored already, and no commit will come to free it.
            let checkpoint = state.checkpoint;
            self.free_drained_active(&mut state, checkpoint);
            drop(state);
            std::thread::sleep(Duration::from_millis(500));
            state = self.lock();
        }
        self.appended(state);
    }

    /// Appends one record without waiting: not for room (the bound does not apply) and not
    /// for a failing disk (the error is returned). For the dead-letter journal, whose writer
    /// must never block.
    pub fn try_append(
        &self,
        topic: &str,
        payload: &[u8],
        received_ms: i64,
    ) -> Result<(), SpoolError> {
        let record = Record::encode(topic, payload, usize::MAX, received_ms, None);
        let mut state = self.lock();
        if let Err(err) = self.write_record(&mut state, &record) {
            state.write_error = Some(err.to_string());
            return Err(err);
        }
        self.appended(state);
        Ok(())
    }

    fn appended(&self, mut state: MutexGuard<'_, State>) {
        if state.write_error.take().is_some() {
            tracing::info!("spool writes succeed again");
        }
        state.pending_messages += 1;
        drop(state);
        self.shared.appended.notify_one();
    }

    fn write_record(&self, state: &mut State, record: &[u8]) -> Result<(), SpoolError> {
        let config = &self.shared.config;
        let len = record.len() as u64;
        let active_len = state.sizes.get(&state.active).copied().unwrap_or(0);
        if active_len > 0 && active_len + len > config.segment_bytes {
            self.rotate(state)?;
        }
        let path = segment_path(&config.dir, state.active);
        let start = state.sizes.get(&state.active).copied().unwrap_or(0);
        let written = (&*state.active_file).write_all(record).and_then(|()| {
            if config.fsync_always {
                state.active_file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(source) = written {
            // Leave no partial record behind for the reader or the next start.
            let _ = state.active_file.set_len(start);
            return Err(SpoolError::Io { path, source });
        }
        *state.sizes.entry(state.active).or_insert(0) += len;
        state.total_bytes += len;
        state.dirty = true;
        Ok(())
    }

    fn rotate(&self, state: &mut State) -> Result<(), SpoolError> {
        let dir = &self.shared.config.dir;
        let old = segment_path(dir, state.active);
        state.active_file.sync_data().map_err(io_error(&old))?;
        let next = state.active + 1;
        let path = segment_path(dir, next);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        // The new name must survive a power cut as well as its contents.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(dir))?;
        state.active = next;
        state.active_file = Arc::new(file);
        state.sizes.insert(next, 0);
        Ok(())
    }

    /// Records that everything up to `position` (`messages` records) is stored: moves the
    /// checkpoint, deletes the segments behind it and wakes a writer waiting for room.
    pub fn commit(&self, position: Position, messages: u64) -> Result<(), SpoolError> {
        let dir = self.shared.config.dir.clone();
        self.shared
            .checkpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .store(position)?;
        let mut state = self.lock();
        state.checkpoint = position;
        state.pending_messages = state.pending_messages.saturating_sub(messages);
        let behind: Vec<u64> = state
            .sizes
            .range(..position.segment)
            .map(|(segment, _)| *segment)
            .filter(|segment| *segment != state.active)
            .collect();
        for segment in behind {
            let path = segment_path(&dir, segment);
            match fs::remove_file(&path) {
                Ok(()) => {
                    let freed = state.sizes.remove(&segment).unwrap_or(0);
                    state.total_bytes -= freed;
                }
                Err(err) => {
                    tracing::warn!(error = %err, segment = %path.display(), "spool: stored segment not deleted; retrying at the next commit");
                }
            }
        }
        self.free_drained_active(&mut state, position);
        drop(state);
        self.shared.room.notify_all();
        Ok(())
    }

    /// While writes fail, a fully stored active segment is the only space left to free: a
    /// new (empty) one takes its place and it is deleted.
    fn free_drained_active(&self, state: &mut State, position: Position) {
        let active_len = state.sizes.get(&state.active).copied().unwrap_or(0);
        if state.write_error.is_none()
            || position.segment != state.active
            || position.offset < active_len
            || active_len == 0
        {
            return;
        }
        let drained = state.active;
        if let Err(err) = self.rotate(state) {
            tracing::warn!(error = %err, "spool: cannot start a new segment to free the stored one");
            return;
        }
        let path = segment_path(&self.shared.config.dir, drained);
        if fs::remove_file(&path).is_ok() {
            let freed = state.sizes.remove(&drained).unwrap_or(0);
            state.total_bytes -= freed;
            // In memory only: the checkpoint on disk names the deleted segment, which the
            // next start reads as "everything before the oldest segment is stored".
            state.checkpoint = Position {
                segment: state.active,
                offset: 0,
            };
            tracing::info!(
                freed_bytes = freed,
                "spool: stored segment deleted to make room"
            );
        }
    }

    /// Pending bytes and messages, the bound, and whether the writer waits for room.
    pub fn stats(&self) -> SpoolStats {
        let state = self.lock();
        let behind_checkpoint = state.checkpoint.offset;
        let pending_bytes = state
            .sizes
            .range(state.checkpoint.segment..)
            .map(|(_, size)| *size)
            .sum::<u64>()
            .saturating_sub(behind_checkpoint);
        SpoolStats {
            pending_bytes,
            pending_messages: state.pending_messages,
            max_bytes: self.shared.config.max_bytes,
            full: state.full,
            damaged_bytes_skipped: self.shared.damaged_bytes.load(Ordering::Relaxed),
            write_error: state.write_error.clone(),
        }
    }

    /// fsyncs what was written since the last call (the `interval` policy's tick).
    pub fn sync(&self) -> Result<(), SpoolError> {
        let file = {
            let mut state = self.lock();
            if !state.dirty {
                return Ok(());
            }
            state.dirty = false;
            state.active_file.clone()
        };
        file.sync_data().map_err(io_error(&self.shared.config.dir))
    }

    /// Lets a writer waiting for room go on (over the bound) so the process can stop.
    pub fn close(&self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        self.shared.room.notify_all();
        if let Err(err) = self.sync() {
            tracing::warn!(error = %err, "spool: final fsync failed");
        }
    }
}

/// The replaying side: reads records in order from the checkpoint on.
pub struct SpoolReader {
    shared: Arc<Shared>,
    position: Position,
    file: Option<BufReader<File>>,
    body: Vec<u8>,
    /// How far the current segment was written when last asked: records before it are read
    /// without taking the writer's lock again.
    known_limit: u64,
}

/// What [`SpoolReader::next_record`] found.
#[derive(Debug)]
pub enum Next {
    /// A record and the position right after it.
    Record(Record, Position),
    /// Nothing more has been written yet.
    CaughtUp,
}

impl SpoolReader {
    /// The next record, without waiting.
    pub fn next_record(&mut self) -> Result<Next, SpoolError> {
        loop {
            if self.position.offset < self.known_limit
                && let Some(next) = self.read_one(self.known_limit)?
            {
                return Ok(next);
            }
            let (limit, following) = {
                let state = self
                    .shared
                    .state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let limit = state.sizes.get(&self.position.segment).copied();
                let following = state
                    .sizes
                    .range(self.position.segment + 1..)
                    .next()
                    .map(|(segment, _)| *segment);
                (limit, following)
            };
            let limit = limit.unwrap_or(0);
            self.known_limit = limit;
            if self.position.offset >= limit {
                match following {
                    Some(segment) => {
                        self.position = Position { segment, offset: 0 };
                        self.file = None;
                        self.known_limit = 0;
                        continue;
                    }
                    None => return Ok(Next::CaughtUp),
                }
            }
            if let Some(next) = self.read_one(limit)? {
                return Ok(next);
            }
        }
    }

    /// Reads the record at the current position, which lies before `limit`; `None` when it is
    /// damaged (then the rest of the segment is skipped).
    fn read_one(&mut self, limit: u64) -> Result<Option<Next>, SpoolError> {
        let path = segment_path(&self.shared.config.dir, self.position.segment);
        if self.file.is_none() {
            let mut file = File::open(&path).map_err(io_error(&path))?;
            file.seek(SeekFrom::Start(self.position.offset))
                .map_err(io_error(&path))?;
            self.file = Some(BufReader::with_capacity(256 * 1024, file));
        }
        let Some(reader) = self.file.as_mut() else {
            return Ok(None);
        };
        let found = read_record(reader, &mut self.body, self.position.offset, limit)
            .map_err(io_error(&path))?;
        match (found, found.and_then(|_| Record::decode(&self.body))) {
            (Some(body_len), Some(record)) => {
                self.position.offset += (HEADER + body_len) as u64;
                Ok(Some(Next::Record(record, self.position)))
            }
            _ => {
                // Only damage on disk gets here (the writer writes whole records and a torn
                // tail was cut at start): go on at the next intact record.
                let next = self.next_intact(&path, limit)?;
                let skipped = next - self.position.offset;
                tracing::error!(
                    segment = %path.display(),
                    offset = self.position.offset,
                    skipped_bytes = skipped,
                    "spool: damaged record skipped; reading on at the next intact one"
                );
                self.shared
                    .damaged_bytes
                    .fetch_add(skipped, Ordering::Relaxed);
                self.position.offset = next;
                self.file = None;
                Ok(None)
            }
        }
    }

    /// The offset of the first intact record after the damaged one at the current position,
    /// or `limit` when none follows it in this segment.
    fn next_intact(&self, path: &Path, limit: u64) -> Result<u64, SpoolError> {
        let from = self.position.offset;
        let mut bytes = Vec::with_capacity((limit - from) as usize);
        let mut file = File::open(path).map_err(io_error(path))?;
        file.seek(SeekFrom::Start(from))
            .and_then(|_| file.take(limit - from).read_to_end(&mut bytes))
            .map_err(io_error(path))?;
        Ok(resync(&bytes, 1).map_or(limit, |at| from + at as u64))
    }

    /// Waits until the writer appends something (or `timeout` passes).
    pub async fn wait(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.shared.appended.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// A folder removed when the test ends.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "plantline-spool-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn config(dir: &Path) -> SpoolConfig {
        SpoolConfig {
            dir: dir.to_owned(),
            max_bytes: 1 << 20,
            segment_bytes: 4096,
            fsync_always: false,
            max_payload_bytes: 1024,
        }
    }

    fn drain(reader: &mut SpoolReader) -> Vec<(Record, Position)> {
        let mut out = Vec::new();
        while let Next::Record(record, at) = reader.next_record().unwrap() {
            out.push((record, at));
        }
        out
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_after_a_restart() {
        let dir = TempDir::new();
        let (spool, mut reader) = Spool::open(config(dir.path())).unwrap();
        for i in 0..300 {
            spool.append(&format!("t/{i}"), format!("payload {i}").as_bytes(), i);
        }
        let read = drain(&mut reader);
        assert_eq!(read.len(), 300);
        assert!(
            read.iter()
                .enumerate()
                .all(|(i, (r, _))| r.topic == format!("t/{i}")
                    && r.payload == format!("payload {i}").as_bytes()
                    && r.received_ms == i as i64)
        );
        assert!(read.last().unwrap().1.segment > 1, "several segments used");
        // Commit half; the other half is replayed by the next process.
        spool.commit(read[149].1, 150).unwrap();
        assert_eq!(spool.stats().pending_messages, 150);
        drop((spool, reader));
        let (spool, mut reader) = Spool::open(config(dir.path())).unwrap();
        assert_eq!(spool.stats().pending_messages, 150);
        let replayed = drain(&mut reader);
        assert_eq!(replayed.len(), 150);
        assert_eq!(replayed[0].0.topic, "t/150");
    }

    #[test]
    fn commit_deletes_stored_segments_and_frees_room() {
        let dir = TempDir::new();
        let (spool, mut reader) = Spool::open(config(dir.path())).unwrap();
        for i in 0..200 {
            spool.append("t", &[b'x'; 100], i);
        }
        let segments = || fs::read_dir(dir.path()).unwrap().count();
        let before = segments();
        let read = drain(&mut reader);
        spool.commit(read.last().unwrap().1, 200).unwrap();
        assert!(segments() < before);
        let stats = spool.stats();
        assert_eq!((stats.pending_bytes, stats.pending_messages), (0, 0));
    }

    #[test]
    fn a_torn_tail_is_cut_and_never_replayed() {
        let dir = TempDir::new();
        let (spool, _) = Spool::open(config(dir.path())).unwrap();
        spool.append("a", b"one", 1);
        spool.append("b", b"two", 2);
        drop(spool);
        let path = segment_path(dir.path(), 1);
        let full = fs::read(&path).unwrap();
        // A crash in the middle of the third record: its header and half its body.
        let third = Record::encode("c", b"three", 1024, 3, None);
        let mut torn = full.clone();
        torn.extend_from_slice(&third[..third.len() / 2]);
        fs::write(&path, &torn).unwrap();
        let (spool, mut reader) = Spool::open(config(dir.path())).unwrap();
        let read = drain(&mut reader);
        assert_eq!(read.len(), 2);
        assert_eq!(fs::metadata(&path).unwrap().len(), full.len() as u64);
        // Appending after the cut works and is read in order.
        spool.append("d", b"four", 4);
        let Next::Record(record, _) = reader.next_record().unwrap() else {
            panic!("the new record is readable");
        };
        assert_eq!(record.topic, "d");
    }

    #[test]
    fn a_flipped_byte_or_a_zero_filled_tail_is_rejected_by_the_checksum() {
        let dir = TempDir::new();
        let (spool, _) = Spool::open(config(dir.path())).unwrap();
        spool.append("a", b"one", 1);
        spool.append("b", b"two", 2);
        drop(spool);
        let path = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        bytes.extend_from_slice(&[0; 64]);
        fs::write(&path, &bytes).unwrap();
        let (_spool, mut reader) = Spool::open(config(dir.path())).unwrap();
        let read = drain(&mut reader);
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].0.topic, "a");
    }

    /// Issue 17: a bad record in the middle of a segment used to cut off every good record
    /// after it at start-up.
    #[test]
    fn a_damaged_record_mid_segment_is_skipped_and_the_rest_replayed_after_a_restart() {
        let dir = TempDir::new();
        let (spool, _) = Spool::open(config(dir.path())).unwrap();
        for (i, topic) in ["a", "b", "c", "d"].iter().enumerate() {
            spool.append(topic, b"payload", i as i64);
        }
        // A fifth record in a later segment: the damaged one is then not the newest.
        let mut state = spool.lock();
        spool.rotate(&mut state).unwrap();
        drop(state);
        spool.append("e", b"payload", 5);
        drop(spool);
        let path = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&path).unwrap();
        let record_len = bytes.len() / 4;
        bytes[record_len + HEADER + 3] ^= 0xff; // inside b's body
        fs::write(&path, &bytes).unwrap();
        let (spool, mut reader) = Spool::open(config(dir.path())).unwrap();
        let topics: Vec<String> = drain(&mut reader)
            .into_iter()
            .map(|(r, _)| r.topic)
            .collect();
        assert_eq!(topics, ["a", "c", "d", "e"]);
        assert_eq!(spool.stats().damaged_bytes_skipped, record_len as u64);
        assert_eq!(spool.stats().pending_messages, 4);
        assert_eq!(fs::metadata(&path).unwrap().len(), bytes.len() as u64);
    }

    #[test]
    fn damage_found_while_reading_skips_to_the_next_intact_record() {
        let dir = TempDir::new();
        let (spool, mut reader) = Spool::open(config(dir.path())).unwrap();
        for topic in ["a", "b", "c"] {
            spool.append(topic, b"payload", 1);
        }
        let path = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&path).unwrap();
        let record_len = bytes.len() / 3;
        bytes[record_len + 1] ^= 0xff; // b's length
        fs::write(&path, &bytes).unwrap();
        let topics: Vec<String> = drain(&mut reader)
            .into_iter()
            .map(|(r, _)| r.topic)
            .collect();
        assert_eq!(topics, ["a", "c"]);
        assert_eq!(spool.stats().damaged_bytes_skipped, record_len as u64);
    }

    #[test]
    fn a_walk_resynchronises_after_garbage_and_stops_at_a_torn_tail() {
        let record = |topic: &str| Record::encode(topic, b"x", 1024, 1, None);
        let mut bytes = record("a");
        bytes.extend_from_slice(&[7; 13]);
        bytes.extend_from_slice(&record("b"));
        let end = bytes.len();
        bytes.extend_from_slice(&record("c")[..10]);
        let walked = walk(&bytes);
        assert_eq!(
            walked,
            Walk {
                count: 2,
                end,
                skipped: 13
            }
        );
    }

    #[test]
    fn a_second_process_cannot_open_a_spool_in_use() {
        let dir = TempDir::new();
        let (spool, reader) = Spool::open(config(dir.path())).unwrap();
        assert!(matches!(
            Spool::open(config(dir.path())),
            Err(SpoolError::InUse(_))
        ));
        drop((spool, reader));
        assert!(Spool::open(config(dir.path())).is_ok(), "released on drop");
    }

    #[test]
    fn oversized_payloads_keep_their_head_and_real_size() {
        let dir = TempDir::new();
        let (spool, mut reader) = Spool::open(config(dir.path())).unwrap();
        spool.append("big", &[b'y'; 3000], 1);
        let read = drain(&mut reader);
        assert_eq!(read[0].0.payload.len(), 1024);
        assert_eq!(read[0].0.truncated_from, Some(3000));
    }

    #[test]
    fn a_publishers_traceparent_is_kept_with_its_message() {
        let dir = TempDir::new();
        let (spool, mut reader) = Spool::open(config(dir.path())).unwrap();
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        spool.append_traced("a", b"one", 1, Some(trace));
        spool.append("b", b"two", 2);
        spool.append_traced("c", &[b'y'; 3000], 3, Some(trace));
        spool.append_traced("d", b"four", 4, Some(&"x".repeat(300)));
        let read = drain(&mut reader);
        assert_eq!(read[0].0.traceparent.as_deref(), Some(trace));
        assert_eq!(read[0].0.payload, b"one");
        assert_eq!(read[1].0.traceparent, None);
        assert_eq!(read[1].0.payload, b"two");
        assert_eq!(read[2].0.traceparent.as_deref(), Some(trace));
        assert_eq!(
            (read[2].0.payload.len(), read[2].0.truncated_from),
            (1024, Some(3000))
        );
        // Too long to be a traceparent: dropped, the message kept.
        assert_eq!(
            (
                read[3].0.traceparent.as_deref(),
                read[3].0.payload.as_slice()
            ),
            (None, b"four".as_slice())
        );
    }

    #[test]
    fn a_full_spool_holds_the_writer_until_a_commit_makes_room() {
        let dir = TempDir::new();
        let mut cfg = config(dir.path());
        cfg.max_bytes = 8192;
        let (spool, mut reader) = Spool::open(cfg).unwrap();
        let mut appended = 0;
        while spool.stats().pending_bytes + 200 < 8192 {
            spool.append("t", &[b'z'; 150], appended);
            appended += 1;
        }
        let writer = {
            let spool = spool.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    spool.append("late", &[b'z'; 150], i);
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !spool.stats().full {
            assert!(Instant::now() < deadline, "the writer never waited");
            std::thread::yield_now();
        }
        let mut stored = 0;
        while !writer.is_finished() || stored < appended as u64 + 20 {
            assert!(Instant::now() < deadline, "the writer never got room");
            let read = drain(&mut reader);
            if let Some((_, at)) = read.last() {
                stored += read.len() as u64;
                spool.commit(*at, read.len() as u64).unwrap();
            }
            std::thread::yield_now();
        }
        writer.join().unwrap();
        assert_eq!(stored, appended as u64 + 20);
        assert!(!spool.stats().full);
    }
}
