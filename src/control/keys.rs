//! Run keys: a random master key per run, one HKDF-derived key per worker, delivered to the
//! worker through an inherited pipe.
//!
//! **Key material never appears in argv, the environment, a file, a log line or an error
//! message**: `Debug` and `Display` print `<redacted>`, errors describe what failed without the
//! bytes, and the only way a key leaves the supervisor is the write end of a pipe whose read end
//! the child inherits, reads once and closes. Keys are overwritten when dropped.
//!
//! Per-worker keys come from HKDF-SHA256 (RFC 5869, the `hkdf` crate) with the worker id as
//! `info`, so a compromised worker cannot speak for another.

use std::fmt;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use hkdf::Hkdf;
use sha2::Sha256;

/// Bytes of every key.
pub const KEY_LEN: usize = 32;

/// The fd number on which a worker finds its key pipe.
pub const KEY_FD: RawFd = 3;

/// Domain separation for the derivation (HKDF salt).
const HKDF_SALT: &[u8] = b"stream-kernel control v1";

/// Producing or delivering a key failed. Messages never contain key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The OS random number generator failed.
    #[error("the OS random number generator failed: {0}")]
    Random(String),
    /// The key pipe could not be created.
    #[error("cannot create the key pipe: {0}")]
    Pipe(std::io::Error),
    /// The key could not be written into its pipe.
    #[error("cannot write the key into its pipe: {0}")]
    Write(std::io::Error),
    /// The key could not be read from its inherited pipe.
    #[error("cannot read the key from fd {fd}: {source}")]
    Read {
        /// The inherited fd.
        fd: RawFd,
        /// The system's error.
        source: std::io::Error,
    },
    /// The key pipe did not hold exactly one key.
    #[error("the key pipe on fd {fd} held {got} bytes, expected exactly {KEY_LEN}")]
    WrongLength {
        /// The inherited fd.
        fd: RawFd,
        /// Bytes it held.
        got: usize,
    },
}

fn wipe(bytes: &mut [u8; KEY_LEN]) {
    for byte in bytes.iter_mut() {
        // SAFETY: `byte` is a valid, exclusive reference; a volatile write keeps the compiler
        // from eliding the wipe of memory that is about to be freed.
        unsafe { std::ptr::write_volatile(byte, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// The run's master key (32 random bytes).
pub struct MasterKey([u8; KEY_LEN]);

/// One worker's key.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkerKey([u8; KEY_LEN]);

impl MasterKey {
    /// Draws a fresh key from the OS RNG.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self(bytes))
    }

    /// A master key from fixed bytes: for deterministic tooling (the fuzz corpus), never for
    /// a run, whose key is always [`MasterKey::generate`]d.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The key of `worker_id` (HKDF-SHA256, `info` = the worker id).
    pub fn derive(&self, worker_id: &str) -> WorkerKey {
        let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), &self.0);
        let mut okm = [0u8; KEY_LEN];
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32, so expand cannot fail.
        if hk.expand(worker_id.as_bytes(), &mut okm).is_err() {
            unreachable!("HKDF-SHA256 can always expand 32 bytes");
        }
        WorkerKey(okm)
    }
}

impl WorkerKey {
    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl Drop for WorkerKey {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl fmt::Display for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Debug for WorkerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WorkerKey(<redacted>)")
    }
}

impl fmt::Display for WorkerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The read end of a pipe that holds one worker key, for a child to inherit.
#[derive(Debug)]
pub struct KeyPipe {
    read_end: OwnedFd,
}

impl KeyPipe {
    /// Writes `key` into a fresh pipe and closes the write end; the returned read end is
    /// close-on-exec until the spawner moves it to [`KEY_FD`] in the child.
    pub fn with_key(key: &WorkerKey) -> Result<Self, KeyError> {
        let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| KeyError::Pipe(e.into()))?;
        let mut writer = std::fs::File::from(write_end);
        // 32 bytes always fit a pipe's buffer: this never blocks.
        writer.write_all(key.as_bytes()).map_err(KeyError::Write)?;
        drop(writer);
        Ok(Self { read_end })
    }

    /// The fd to move to [`KEY_FD`] in the child (with `dup2`, which clears close-on-exec).
    pub fn read_fd(&self) -> RawFd {
        self.read_end.as_raw_fd()
    }
}

/// Reads the key a spawner left on `fd` (normally [`KEY_FD`]): exactly 32 bytes then end of
/// file. Takes ownership of `fd` and closes it, so the key can be read only once.
///
/// # Safety
///
/// `fd` must be an open fd this process owns and that nothing else uses.
pub unsafe fn read_inherited_key(fd: RawFd) -> Result<WorkerKey, KeyError> {
    // Refuse an fd that is not open rather than take ownership of nothing.
    // SAFETY: F_GETFD on an integer fd has no memory-safety requirements.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(KeyError::Read {
            fd,
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: ownership of an open fd is handed over by the caller.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut bytes = [0u8; KEY_LEN];
    let mut got = 0;
    while got < KEY_LEN {
        match file.read(&mut bytes[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(KeyError::Read { fd, source }),
        }
    }
    let mut extra = [0u8; 1];
    let trailing = file.read(&mut extra).unwrap_or(0);
    if got != KEY_LEN || trailing != 0 {
        wipe(&mut bytes);
        return Err(KeyError::WrongLength {
            fd,
            got: got + trailing,
        });
    }
    let key = WorkerKey(bytes);
    wipe(&mut bytes);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_per_worker_and_deterministic() {
        let master = MasterKey::generate().unwrap();
        assert_eq!(master.derive("a#1"), master.derive("a#1"));
        assert_ne!(master.derive("a#1"), master.derive("a#2"));
        let other = MasterKey::generate().unwrap();
        assert_ne!(master.derive("a#1"), other.derive("a#1"));
    }

    #[test]
    fn hkdf_matches_rfc5869_test_case_1() {
        // RFC 5869 A.1, to show this is real HKDF-SHA256.
        let ikm = [0x0b; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let mut okm = [0u8; 42];
        Hkdf::<Sha256>::new(Some(&salt), &ikm)
            .expand(&info, &mut okm)
            .unwrap();
        assert_eq!(okm[..8], [0x3c, 0xb2, 0x5f, 0x25, 0xfa, 0xac, 0xd5, 0x7a]);
    }

    #[test]
    fn keys_print_redacted() {
        let master = MasterKey::generate().unwrap();
        let key = master.derive("w#1");
        for text in [
            format!("{master:?}"),
            format!("{master}"),
            format!("{key:?}"),
            format!("{key}"),
        ] {
            assert!(text.contains("<redacted>"), "{text}");
            assert!(!text.contains(&format!("{:?}", key.as_bytes())[1..6]));
        }
    }

    #[test]
    fn key_travels_through_a_pipe_once() {
        let key = MasterKey::generate().unwrap().derive("w#1");
        let pipe = KeyPipe::with_key(&key).unwrap();
        let fd = nix::unistd::dup(&pipe.read_end).unwrap();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(fd);
        drop(pipe);
        // SAFETY: `fd` is a fresh dup owned by nothing else.
        let read = unsafe { read_inherited_key(fd) }.unwrap();
        assert_eq!(read, key);
    }
}
