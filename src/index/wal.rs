//! The write-ahead log: every acknowledged write of a collection since its last snapshot.
//!
//! A record is `payload length (u32) | CRC-32 of lsn and payload (u32) | lsn (u64) | payload`,
//! appended and flushed to disk (fdatasync) before the write is applied or acknowledged. A crash
//! in the middle of an append leaves a torn last record: a short one, or one whose checksum fails
//! with nothing valid after it (a file can be extended with zeros). Replay drops it, since its
//! write was never acknowledged; a bad record with valid data after it is corruption and an error.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::codec::{Malformed, Reader, Writer};
use super::store::Item;

const HEADER: usize = 16;

/// Record kinds. Kind 1, upserts logged before items kept their text, is still replayed.
const UPSERT_WITHOUT_TEXTS: u8 = 1;
const DELETE: u8 = 2;
const UPSERT: u8 = 3;

/// A logged write.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Upsert(Vec<Item>),
    Delete(Vec<String>),
}

impl Op {
    fn encode(&self, w: &mut Writer) {
        match self {
            Op::Upsert(items) => {
                w.u8(UPSERT);
                w.u32(items.len() as u32);
                for item in items {
                    w.item(item);
                }
            }
            Op::Delete(ids) => {
                w.u8(DELETE);
                w.u32(ids.len() as u32);
                for id in ids {
                    w.str(id);
                }
            }
        }
    }

    fn decode(bytes: &[u8], dim: usize) -> Result<Op, Malformed> {
        let mut r = Reader::new(bytes);
        let op = match r.u8()? {
            UPSERT_WITHOUT_TEXTS => Op::Upsert(
                (0..r.u32()?)
                    .map(|_| r.item_without_text(dim))
                    .collect::<Result<_, _>>()?,
            ),
            UPSERT => Op::Upsert(
                (0..r.u32()?)
                    .map(|_| r.item(dim))
                    .collect::<Result<_, _>>()?,
            ),
            DELETE => Op::Delete((0..r.u32()?).map(|_| r.str()).collect::<Result<_, _>>()?),
            kind => return Err(Malformed(format!("unknown record kind {kind}"))),
        };
        if !r.is_empty() {
            return Err(Malformed("trailing bytes".into()));
        }
        Ok(op)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: corrupt record at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

/// Logged writes with their sequence numbers, in order.
pub type Records = Vec<(u64, Op)>;

/// What replay found.
pub struct Replayed {
    /// The records, in order.
    pub records: Records,
    /// Bytes of a torn last record that were cut off.
    pub torn_bytes: u64,
}

pub struct Wal {
    path: PathBuf,
    file: File,
    len: u64,
    /// A failed append could not be cut back: appending more could bury a half-written record
    /// under good ones, so every later append fails.
    broken: bool,
}

impl Wal {
    /// Opens (or creates) the log, reads every record and cuts off a torn last one. `after` is
    /// the sequence number of the snapshot the log follows: records after a bad first one are
    /// numbered from there.
    pub fn open(path: &Path, dim: usize, after: u64) -> Result<(Wal, Replayed), WalError> {
        let io = |source| WalError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let (records, good) =
            parse(&bytes, dim, after).map_err(|(offset, reason)| WalError::Corrupt {
                path: path.to_owned(),
                offset,
                reason,
            })?;
        let torn_bytes = bytes.len() as u64 - good;
        if torn_bytes > 0 {
            file.set_len(good).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        file.seek(SeekFrom::Start(good)).map_err(io)?;
        let wal = Wal {
            path: path.to_owned(),
            file,
            len: good,
            broken: false,
        };
        Ok((
            wal,
            Replayed {
                records,
                torn_bytes,
            },
        ))
    }

    /// Appends the record and waits for it to reach the disk. On failure the log is cut back to
    /// where it was, so a half-written record never sits before later ones.
    pub fn append(&mut self, lsn: u64, op: &Op) -> Result<(), WalError> {
        if self.broken {
            return Err(WalError::Io {
                path: self.path.clone(),
                source: std::io::Error::other("an earlier failed append could not be undone"),
            });
        }
        let mut payload = Writer::default();
        op.encode(&mut payload);
        let mut record = Writer::default();
        record.u32(payload.bytes.len() as u32);
        record.u32(checksum(lsn, &payload.bytes));
        record.u64(lsn);
        record.bytes.extend_from_slice(&payload.bytes);
        let written = self
            .file
            .write_all(&record.bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            self.broken = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.seek(SeekFrom::Start(self.len)))
                .is_err();
            return Err(WalError::Io {
                path: self.path.clone(),
                source,
            });
        }
        self.len += record.bytes.len() as u64;
        Ok(())
    }

    /// Empties the log: everything in it is in a snapshot now.
    pub fn clear(&mut self) -> Result<(), WalError> {
        let io = |source| WalError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.set_len(0).map_err(io)?;
        self.file.seek(SeekFrom::Start(0)).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.len = 0;
        Ok(())
    }
}

fn checksum(lsn: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&lsn.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// The records, and the length of the file up to the end of the last good one.
fn parse(bytes: &[u8], dim: usize, after: u64) -> Result<(Records, u64), (u64, String)> {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        match record_at(&bytes[at..], dim) {
            Ok((lsn, op, len)) => {
                records.push((lsn, op));
                at += len;
            }
            Err(reason) => {
                let last = records.last().map_or(after, |r: &(u64, Op)| r.0);
                if valid_record_follows(&bytes[at + 1..], dim, last) {
                    return Err((at as u64, reason));
                }
                break;
            }
        }
    }
    Ok((records, at as u64))
}

/// One record at the start of `bytes`: its lsn, op and length.
fn record_at(bytes: &[u8], dim: usize) -> Result<(u64, Op, usize), String> {
    if bytes.len() < HEADER {
        return Err("short header".into());
    }
    let mut header = Reader::new(&bytes[..HEADER]);
    let (len, crc, lsn) = (
        header.u32().expect("16 bytes") as usize,
        header.u32().expect("16 bytes"),
        header.u64().expect("16 bytes"),
    );
    let payload = bytes
        .get(HEADER..HEADER + len)
        .ok_or_else(|| "short payload".to_string())?;
    if checksum(lsn, payload) != crc {
        return Err("checksum mismatch".into());
    }
    let op = Op::decode(payload, dim).map_err(|e| e.to_string())?;
    Ok((lsn, op, HEADER + len))
}

/// Whether a whole, valid record starts anywhere in `bytes`: then a bad record before it is not
/// a torn tail. Only offsets whose header is plausible (a later sequence number, no further
/// ahead than records could be) are checksummed, so this stays fast on a long log.
fn valid_record_follows(bytes: &[u8], dim: usize, last_lsn: u64) -> bool {
    let most_records = (bytes.len() / HEADER) as u64 + 1;
    (0..bytes.len()).any(|at| {
        let Some(header) = bytes.get(at..at + HEADER) else {
            return false;
        };
        let lsn = u64::from_le_bytes(header[8..].try_into().expect("8 bytes"));
        let plausible = lsn > last_lsn && lsn <= last_lsn + most_records;
        plausible && record_at(&bytes[at..], dim).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("clipd-wal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn upsert(id: &str) -> Op {
        Op::Upsert(vec![Item {
            id: id.into(),
            metadata: [("k".to_string(), "v".to_string())].into(),
            vector: vec![1.0, 0.0],
            text: Some(format!("the text of {id}")),
        }])
    }

    /// An upsert record as clipd logged it before items kept their text replays, textless.
    #[test]
    fn upserts_logged_before_texts_were_kept_still_replay() {
        let path = dir("textless").join("wal");
        let mut payload = Writer::default();
        payload.u8(UPSERT_WITHOUT_TEXTS);
        payload.u32(1);
        payload.str("old");
        payload.metadata(&Default::default());
        payload.floats(&[0.0, 1.0]);
        let mut record = Writer::default();
        record.u32(payload.bytes.len() as u32);
        record.u32(checksum(1, &payload.bytes));
        record.u64(1);
        record.bytes.extend_from_slice(&payload.bytes);
        std::fs::write(&path, &record.bytes).unwrap();
        let (_, replayed) = Wal::open(&path, 2, 0).unwrap();
        let Op::Upsert(items) = &replayed.records[0].1 else {
            panic!("not an upsert: {:?}", replayed.records);
        };
        assert_eq!((items[0].id.as_str(), &items[0].text), ("old", &None));
    }

    fn written(path: &Path) -> Vec<Op> {
        written_after(path, 0)
    }

    /// Three records numbered from `after + 1`, as after a snapshot at `after`.
    fn written_after(path: &Path, after: u64) -> Vec<Op> {
        let (mut wal, replayed) = Wal::open(path, 2, after).unwrap();
        assert_eq!(replayed.records.len(), 0);
        let ops = vec![
            upsert("a"),
            Op::Delete(vec!["a".into(), "b".into()]),
            upsert("c"),
        ];
        for (lsn, op) in ops.iter().enumerate() {
            wal.append(after + lsn as u64 + 1, op).unwrap();
        }
        ops
    }

    #[test]
    fn records_replay_in_order() {
        let path = dir("order").join("wal");
        let ops = written(&path);
        let (_, replayed) = Wal::open(&path, 2, 0).unwrap();
        let lsns: Vec<u64> = replayed.records.iter().map(|r| r.0).collect();
        assert_eq!(lsns, [1, 2, 3]);
        let replayed_ops: Vec<Op> = replayed.records.into_iter().map(|r| r.1).collect();
        assert_eq!(replayed_ops, ops);
    }

    #[test]
    fn a_torn_last_record_is_cut_off_at_every_length() {
        let path = dir("torn").join("wal");
        written(&path);
        let whole = std::fs::read(&path).unwrap();
        let mut starts = Vec::new();
        let mut at = 0;
        while at < whole.len() {
            starts.push(at);
            at += record_at(&whole[at..], 2).unwrap().2;
        }
        let last = starts[2];
        for cut in last..whole.len() {
            for tail in [&[][..], &[0u8; 64][..]] {
                let mut bytes = whole[..cut].to_vec();
                bytes.extend_from_slice(tail);
                if bytes.starts_with(&whole) {
                    // The cut-off bytes were zeros: the zero tail restored the record.
                    continue;
                }
                std::fs::write(&path, &bytes).unwrap();
                let (mut wal, replayed) = Wal::open(&path, 2, 0).unwrap();
                assert_eq!(replayed.records.len(), 2, "cut at {cut}");
                assert_eq!(std::fs::metadata(&path).unwrap().len(), last as u64);
                wal.append(3, &upsert("d")).unwrap();
                drop(wal);
                let (_, replayed) = Wal::open(&path, 2, 0).unwrap();
                assert_eq!(replayed.records.len(), 3, "appending after a cut at {cut}");
            }
        }
    }

    #[test]
    fn a_bad_record_before_good_ones_is_corruption() {
        let path = dir("corrupt").join("wal");
        written(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 3] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let e = Wal::open(&path, 2, 0).err().expect("corrupt");
        assert!(e.to_string().contains("corrupt record at byte 0"), "{e}");
    }

    #[test]
    fn a_bad_first_record_after_a_late_snapshot_is_corruption() {
        let path = dir("corrupt-late").join("wal");
        let after = 1_000_000;
        written_after(&path, after);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 3] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let e = Wal::open(&path, 2, after).err().expect("corrupt");
        assert!(e.to_string().contains("corrupt record at byte 0"), "{e}");
    }

    #[test]
    fn clear_empties_the_log() {
        let path = dir("clear").join("wal");
        written(&path);
        let (mut wal, _) = Wal::open(&path, 2, 0).unwrap();
        wal.clear().unwrap();
        wal.append(9, &upsert("z")).unwrap();
        let (_, replayed) = Wal::open(&path, 2, 0).unwrap();
        assert_eq!(replayed.records.len(), 1);
        assert_eq!(replayed.records[0].0, 9);
    }
}
