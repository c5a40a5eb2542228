//! The spool's checkpoint: the position up to which everything is stored. It is rewritten in
//! place, in one of two preallocated slots, so moving it needs no new disk space — a full
//! disk must still let the spool free its segments — and a write torn by a crash spoils only
//! the slot being written, never the other. (On copy-on-write filesystems such as btrfs or
//! ZFS even an overwrite needs a free block: give the spool an ext4 or XFS volume.)
//!
//! Slot (32 bytes): `sequence: u64 LE | segment: u64 LE | offset: u64 LE | crc32: u32 LE | 0u32`;
//! the intact slot with the higher sequence wins. Earlier versions wrote `"{segment} {offset}\n"`
//! through a temporary file; that text is still read, and rewritten as slots at open.

use super::{Position, SpoolError, io_error};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const SLOT: usize = 32;
const FILE_NAME: &str = "checkpoint";

/// The open checkpoint file.
pub(super) struct Checkpoint {
    file: File,
    path: PathBuf,
    sequence: u64,
}

fn encode(sequence: u64, position: Position) -> [u8; SLOT] {
    let mut slot = [0u8; SLOT];
    slot[..8].copy_from_slice(&sequence.to_le_bytes());
    slot[8..16].copy_from_slice(&position.segment.to_le_bytes());
    slot[16..24].copy_from_slice(&position.offset.to_le_bytes());
    let crc = crc32fast::hash(&slot[..24]);
    slot[24..28].copy_from_slice(&crc.to_le_bytes());
    slot
}

fn decode(slot: &[u8]) -> Option<(u64, Position)> {
    let word = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(slot.get(at..at + 8)?.try_into().ok()?))
    };
    let crc = u32::from_le_bytes(slot.get(24..28)?.try_into().ok()?);
    if crc != crc32fast::hash(slot.get(..24)?) {
        return None;
    }
    Some((
        word(0)?,
        Position {
            segment: word(8)?,
            offset: word(16)?,
        },
    ))
}

/// The newest intact slot, or the text of earlier versions.
fn parse(bytes: &[u8]) -> Option<(u64, Position)> {
    let slots = [bytes.get(..SLOT), bytes.get(SLOT..2 * SLOT)];
    if let Some(newest) = slots
        .into_iter()
        .flatten()
        .filter_map(decode)
        .max_by_key(|(sequence, _)| *sequence)
    {
        return Some(newest);
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let (segment, offset) = text.trim().split_once(' ')?;
    Some((
        0,
        Position {
            segment: segment.parse().ok()?,
            offset: offset.parse().ok()?,
        },
    ))
}

impl Checkpoint {
    /// Opens the checkpoint in `dir` (creating and preallocating it) and returns what it says.
    pub(super) fn open(dir: &Path) -> Result<(Self, Option<Position>), SpoolError> {
        let path = dir.join(FILE_NAME);
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_error(&path))?;
        let found = parse(&bytes);
        let (sequence, position) = found.unwrap_or_default();
        let checkpoint = Self {
            file,
            path,
            sequence,
        };
        if bytes.len() != 2 * SLOT || found.is_none() {
            // New, of the old format, or unreadable: both slots written now, so that every
            // later move overwrites bytes the file already owns; over the old bytes before
            // the file is cut to size, so there is no moment without a readable checkpoint.
            let both = [encode(sequence, position), encode(sequence, position)].concat();
            checkpoint
                .file
                .write_all_at(&both, 0)
                .and_then(|()| checkpoint.file.set_len(2 * SLOT as u64))
                .and_then(|()| checkpoint.file.sync_all())
                .map_err(io_error(&checkpoint.path))?;
            if !existed {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_error(dir))?;
            }
        }
        Ok((checkpoint, found.map(|(_, position)| position)))
    }

    /// Moves the checkpoint to `position`, overwriting the older slot. Not fsynced: a
    /// checkpoint that a power cut sets back only makes stored messages replay, and InfluxDB
    /// overwrites identical points.
    pub(super) fn store(&mut self, position: Position) -> Result<(), SpoolError> {
        let sequence = self.sequence + 1;
        let at = (sequence % 2) * SLOT as u64;
        self.file
            .write_all_at(&encode(sequence, position), at)
            .map_err(io_error(&self.path))?;
        self.sequence = sequence;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(segment: u64, offset: u64) -> Position {
        Position { segment, offset }
    }

    #[test]
    fn the_newest_intact_slot_wins_and_a_torn_one_is_ignored() {
        let mut bytes = [encode(7, at(3, 100)), encode(8, at(3, 200))].concat();
        assert_eq!(parse(&bytes), Some((8, at(3, 200))));
        // The write of slot 2 torn by a crash: slot 1 still holds the previous position.
        bytes[SLOT + 10] ^= 0xff;
        assert_eq!(parse(&bytes), Some((7, at(3, 100))));
        bytes[3] ^= 0xff;
        assert_eq!(parse(&bytes), None);
    }

    #[test]
    fn the_text_of_earlier_versions_is_read() {
        assert_eq!(parse(b"12 4096\n"), Some((0, at(12, 4096))));
        assert_eq!(parse(b""), None);
    }

    #[test]
    fn moving_it_keeps_the_file_at_its_preallocated_size() {
        let dir = std::env::temp_dir().join(format!("plantline-checkpoint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join(FILE_NAME), "2 50\n").expect("old checkpoint");
        let (mut checkpoint, found) = Checkpoint::open(&dir).expect("open");
        assert_eq!(found, Some(at(2, 50)));
        for offset in 51..60 {
            checkpoint.store(at(2, offset)).expect("store");
        }
        let len = std::fs::metadata(dir.join(FILE_NAME)).expect("size").len();
        let (_, reopened) = Checkpoint::open(&dir).expect("reopen");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(len, 2 * SLOT as u64);
        assert_eq!(reopened, Some(at(2, 59)));
    }
}
