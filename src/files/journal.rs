//! The run journal: a small state file beside a run's primary output that says which prefix of
//! the run is complete, so that a run that ended in any way — finished, stopped, failed,
//! killed with `kill -9`, out of memory, a power cut — can be resumed exactly, and a resume on
//! another input is refused instead of splicing two inputs into one output.
//!
//! The file is `<output>.journal` (JSON, one object, [`Journal`]). It is replaced atomically
//! (written to `<output>.journal.tmp`, fsynced, renamed over, the directory fsynced) at
//! points where the engine knows a completed prefix: every record through `completed.seq` is
//! in the outputs, which then hold exactly `completed.outputs[].bytes` bytes, and the input
//! bytes that produced them are `completed.input_bytes` long with the digest
//! `completed.input_digest`. A process killed at any moment leaves either the previous
//! journal or the new one, never a mix. The outputs themselves are not fsynced: after a power
//! cut an output may be shorter than the journal says, and a resume then refuses it rather
//! than guessing.
//!
//! `checkpoints` are earlier input positions (at most [`MAX_CHECKPOINTS`], thinned evenly as
//! the run goes on): a resumed run whose input differs is refused naming the first span of
//! records where it differs.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::lines::InputPosition;

/// The `format` field of every journal.
pub const FORMAT: &str = "stream-kernel-journal";
/// The journal layout this build writes and reads.
pub const VERSION: u32 = 1;
/// Input checkpoints kept in a journal, besides the completed position.
pub const MAX_CHECKPOINTS: usize = 64;

/// Reading or writing a journal failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file could not be read or written.
    #[error("run journal {path}: {source}")]
    Io {
        /// The journal file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a journal this build can read.
    #[error("run journal {path} is not readable: {detail}")]
    Malformed {
        /// The journal file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
}

/// How far the run got, as of the journal's last update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Running, or killed while running (nothing else updated the journal).
    Running,
    /// Every record is in the outputs: resuming is a no-op.
    Complete,
    /// Stopped by a signal or a stop request; `completed` says where to resume.
    Stopped,
    /// Failed; `completed` says where to resume.
    Failed,
}

/// What the run read.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InputIdentity {
    /// How the run named it (`input.txt`, `stdin`, `generator(lines=10, seed=1)`).
    pub name: String,
    /// The file's absolute path, when it is a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The file's size, device, inode and modification time when the run started (a resumed
    /// run only reports changes: the digests decide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Device number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<u64>,
    /// Inode number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    /// Modification time, nanoseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_unix_ns: Option<i128>,
}

impl InputIdentity {
    /// The identity of the file at `path` (its metadata as of now), named `name`.
    pub fn of_file(name: &str, path: &Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(path).ok().filter(|m| m.is_file());
        Self {
            name: name.to_string(),
            path: std::path::absolute(path).ok(),
            size: metadata.as_ref().map(|m| m.len()),
            device: metadata.as_ref().map(|m| m.dev()),
            inode: metadata.as_ref().map(|m| m.ino()),
            modified_unix_ns: metadata
                .as_ref()
                .map(|m| i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())),
        }
    }

    /// An input that is not a file (stdin, a generator, a program's own source).
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
            ..Self::default()
        }
    }
}

/// One output's length at the completed record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputLength {
    /// Which output: `<node>/<what>` (`sink/output`, `sink/audit`, `dead_letter`).
    pub key: String,
    /// Its path as the run named it.
    pub path: String,
    /// Bytes of the records through the completed one.
    pub bytes: u64,
}

/// An input position at a record, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The record.
    pub seq: u64,
    /// Bytes consumed through it.
    pub bytes: u64,
    /// xxh3-128 of those bytes (`None`: the input has no byte digest).
    #[serde(default, with = "digest_hex")]
    pub digest: Option<u128>,
}

impl Checkpoint {
    /// The checkpoint of record `seq` at `position`.
    pub fn at(seq: u64, position: InputPosition) -> Self {
        Self {
            seq,
            bytes: position.bytes,
            digest: position.digest,
        }
    }
}

/// The completed prefix.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Completed {
    /// Every record through this one is in the outputs (0: none yet).
    pub seq: u64,
    /// Input bytes consumed through it.
    pub input_bytes: u64,
    /// Digest of those bytes.
    #[serde(default, with = "digest_hex")]
    pub input_digest: Option<u128>,
    /// Each output's length at that record.
    pub outputs: Vec<OutputLength>,
}

impl Completed {
    /// The input position of the completed record, as a checkpoint.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            seq: self.seq,
            bytes: self.input_bytes,
            digest: self.input_digest,
        }
    }
}

/// A run journal (see the module header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// The run's id (a resumed run keeps the id of the run it resumes).
    pub run_id: String,
    /// Digest of what decides the output bytes (pipeline, node settings, error policy): a
    /// resume under another pipeline is refused.
    pub config_digest: String,
    /// When the run (its first attempt) started, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// When this journal was written, ms since the Unix epoch.
    pub updated_unix_ms: u64,
    /// How far the run got.
    pub state: RunState,
    /// The last outcome in words (`stopped by SIGTERM`, `failed: ...`), when it ended.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub outcome: String,
    /// What the run read.
    pub input: InputIdentity,
    /// The completed prefix.
    pub completed: Completed,
    /// Earlier input positions, by `seq`, for naming where a changed input differs.
    #[serde(default)]
    pub checkpoints: Vec<Checkpoint>,
    /// The smallest `seq` distance between two kept checkpoints (doubles at each thinning).
    #[serde(default)]
    pub checkpoint_gap: u64,
}

impl Journal {
    /// A fresh run's journal: nothing completed yet.
    pub fn new(run_id: String, config_digest: String, input: InputIdentity) -> Self {
        let now = unix_ms();
        Self {
            format: FORMAT.to_string(),
            version: VERSION,
            run_id,
            config_digest,
            started_unix_ms: now,
            updated_unix_ms: now,
            state: RunState::Running,
            outcome: String::new(),
            input,
            completed: Completed::default(),
            checkpoints: Vec::new(),
            checkpoint_gap: 0,
        }
    }

    /// Where the journal of the output at `output` lives: `<output>.journal`.
    pub fn path_for(output: &Path) -> PathBuf {
        let mut name = output.file_name().unwrap_or_default().to_os_string();
        name.push(".journal");
        output.with_file_name(name)
    }

    /// Reads the journal at `path`; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> Result<Option<Self>, JournalError> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(JournalError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let malformed = |detail: String| JournalError::Malformed {
            path: path.to_path_buf(),
            detail,
        };
        let journal: Self = serde_json::from_slice(&text).map_err(|e| malformed(e.to_string()))?;
        if journal.format != FORMAT || journal.version != VERSION {
            return Err(malformed(format!(
                "format {:?} version {}, expected {FORMAT:?} version {VERSION}",
                journal.format, journal.version
            )));
        }
        Ok(Some(journal))
    }

    /// Replaces the journal at `path` atomically: a reader (or a crash) sees the old one or
    /// this one, whole.
    pub fn write(&mut self, path: &Path) -> Result<(), JournalError> {
        self.updated_unix_ms = unix_ms();
        let io = |source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| io(e.into()))?;
        text.push(b'\n');
        let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
        temp_name.push(".tmp");
        let temp = path.with_file_name(temp_name);
        let mut file = std::fs::File::create(&temp).map_err(io)?;
        file.write_all(&text).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&temp, path).map_err(io)?;
        // The rename itself is durable once the directory is.
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }

    /// Records an input position the run passed (kept thinned to [`MAX_CHECKPOINTS`]).
    pub fn add_checkpoint(&mut self, checkpoint: Checkpoint) {
        if self.checkpoints.last().is_some_and(|last| {
            last.seq >= checkpoint.seq || checkpoint.seq - last.seq < self.checkpoint_gap
        }) {
            return;
        }
        self.checkpoints.push(checkpoint);
        if self.checkpoints.len() > MAX_CHECKPOINTS {
            // Keep every other one: the spans between checkpoints double, evenly.
            let mut index = 0;
            self.checkpoints.retain(|_| {
                index += 1;
                index % 2 == 0
            });
            self.checkpoint_gap = self
                .checkpoints
                .windows(2)
                .map(|w| w[1].seq - w[0].seq)
                .min()
                .unwrap_or(0);
        }
    }

    /// Every input position a resumed run's input must match, by `seq`: the checkpoints and
    /// the completed record.
    pub fn expected_positions(&self) -> Vec<Checkpoint> {
        let mut all: Vec<Checkpoint> = self.checkpoints.clone();
        if self.completed.seq > 0 {
            all.push(self.completed.checkpoint());
        }
        all.sort_by_key(|c| c.seq);
        all.dedup_by_key(|c| c.seq);
        all
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A digest as `xxh3-128:<32 hex digits>`.
pub fn digest_text(digest: u128) -> String {
    format!("xxh3-128:{digest:032x}")
}

mod digest_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(digest: &Option<u128>, s: S) -> Result<S::Ok, S::Error> {
        match digest {
            Some(d) => s.serialize_str(&super::digest_text(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u128>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        let Some(text) = text else { return Ok(None) };
        let hex = text.strip_prefix("xxh3-128:").ok_or_else(|| {
            serde::de::Error::custom(format!("digest {text:?}: expected xxh3-128:<hex>"))
        })?;
        u128::from_str_radix(hex, 16)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("digest {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_survives_its_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = Journal::path_for(&dir.path().join("out.txt"));
        assert!(path.ends_with("out.txt.journal"));
        assert!(Journal::read(&path).unwrap().is_none());
        let mut journal = Journal::new("r1".into(), "c".into(), InputIdentity::named("stdin"));
        journal.completed = Completed {
            seq: 7,
            input_bytes: 70,
            input_digest: Some(0xabc),
            outputs: vec![OutputLength {
                key: "sink/output".into(),
                path: "out.txt".into(),
                bytes: 40,
            }],
        };
        journal.write(&path).unwrap();
        let read = Journal::read(&path).unwrap().unwrap();
        assert_eq!(read.completed, journal.completed);
        assert!(!dir.path().join("out.txt.journal.tmp").exists());
    }

    #[test]
    fn checkpoints_are_thinned_evenly() {
        let mut journal = Journal::new("r".into(), "c".into(), InputIdentity::named("x"));
        for seq in 1..=1000 {
            journal.add_checkpoint(Checkpoint {
                seq,
                bytes: seq * 10,
                digest: None,
            });
        }
        assert!(journal.checkpoints.len() <= MAX_CHECKPOINTS);
        let gaps: Vec<u64> = journal
            .checkpoints
            .windows(2)
            .map(|w| w[1].seq - w[0].seq)
            .collect();
        assert!(gaps.iter().all(|g| *g == gaps[0]), "{gaps:?}");
    }

    #[test]
    fn a_foreign_file_is_not_a_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        std::fs::write(&path, "{\"format\":\"other\",\"version\":1}").unwrap();
        assert!(matches!(
            Journal::read(&path),
            Err(JournalError::Malformed { .. })
        ));
    }
}
