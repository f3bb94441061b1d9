//! Shared-memory segments: anonymous memfd files, sealed to their size, mapped by both ends.
//!
//! The supervisor creates a segment ([`Segment::create`]) and hands its file descriptor to a
//! worker by inheritance; the worker maps it ([`Segment::open_inherited`]) after checking its
//! size and seals. Nothing is named in `/dev/shm`: the memory disappears with the last fd and
//! mapping, so a `kill -9` of anyone leaves nothing behind. Both mappings are pre-faulted
//! (`MAP_POPULATE`) so the first records do not pay page faults.
//!
//! **The layout inside a segment is `#[repr(C)]`-like and identical in every process**: it is
//! defined by offsets in `ring.rs`, never by a Rust struct whose layout could differ.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use memmap2::{MmapOptions, MmapRaw};
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};

use super::memory::{RawMemory, RingMemory};

/// Creating a segment failed.
#[derive(Debug, thiserror::Error)]
pub enum SegmentCreateError {
    /// `memfd_create` failed.
    #[error(
        "cannot create memfd segment `{name}`: {source} (is the per-process file limit reached?)"
    )]
    Create {
        /// The segment's name (shown in `/proc/<pid>/fd`).
        name: String,
        /// The system's error.
        source: nix::Error,
    },
    /// Sizing the segment failed.
    #[error(
        "cannot size memfd segment `{name}` to {len} bytes: {source} (a file size limit, `ulimit -f`, below the ring's size also refuses it)"
    )]
    Resize {
        /// The segment's name.
        name: String,
        /// The size asked for.
        len: usize,
        /// The system's error.
        source: std::io::Error,
    },
    /// Sealing the segment's size failed.
    #[error("cannot seal memfd segment `{name}`: {source}")]
    Seal {
        /// The segment's name.
        name: String,
        /// The system's error.
        source: nix::Error,
    },
    /// Mapping the segment failed.
    #[error("cannot map memfd segment `{name}` ({len} bytes): {source}")]
    Map {
        /// The segment's name.
        name: String,
        /// The size.
        len: usize,
        /// The system's error.
        source: std::io::Error,
    },
}

/// Mapping an inherited segment failed.
#[derive(Debug, thiserror::Error)]
pub enum SegmentOpenError {
    /// The fd is not an open file.
    #[error("fd {fd} is not an open file: {source}")]
    NotOpen {
        /// The inherited fd.
        fd: RawFd,
        /// The system's error.
        source: std::io::Error,
    },
    /// The segment does not have the size the bundle says.
    #[error("segment fd {fd} is {actual} bytes, expected {expected}")]
    WrongSize {
        /// The inherited fd.
        fd: RawFd,
        /// The size the bundle says.
        expected: usize,
        /// The segment's size.
        actual: u64,
    },
    /// The segment is not sealed against resizing (another process could shrink it under us).
    #[error(
        "segment fd {fd} is not sealed against resizing (seals {seals:#x}); refusing to map it"
    )]
    NotSealed {
        /// The inherited fd.
        fd: RawFd,
        /// The seals it has.
        seals: i32,
    },
    /// Mapping the segment failed.
    #[error("cannot map segment fd {fd} ({len} bytes): {source}")]
    Map {
        /// The inherited fd.
        fd: RawFd,
        /// The size.
        len: usize,
        /// The system's error.
        source: std::io::Error,
    },
}

/// A mapped memfd segment.
pub struct Segment {
    file: File,
    map: MmapRaw,
    memory: RawMemory,
    name: String,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("fd", &self.file.as_raw_fd())
            .field("len", &self.map.len())
            .finish()
    }
}

fn map(file: &File, len: usize) -> std::io::Result<MmapRaw> {
    MmapOptions::new().len(len).populate().map_raw(file)
}

impl Segment {
    /// Creates a zeroed, sealed segment of `len` bytes. Its fd is close-on-exec: pass it to a
    /// child explicitly (see [`Segment::inheritable_fd`]).
    pub fn create(name: &str, len: usize) -> Result<Self, SegmentCreateError> {
        let fd: OwnedFd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
            .map_err(|source| SegmentCreateError::Create {
            name: name.to_string(),
            source,
        })?;
        let fd = above_reserved(fd).map_err(|source| SegmentCreateError::Create {
            name: name.to_string(),
            source,
        })?;
        let file = File::from(fd);
        file.set_len(len as u64)
            .map_err(|source| SegmentCreateError::Resize {
                name: name.to_string(),
                len,
                source,
            })?;
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        fcntl(file.as_fd(), FcntlArg::F_ADD_SEALS(seals)).map_err(|source| {
            SegmentCreateError::Seal {
                name: name.to_string(),
                source,
            }
        })?;
        let map = map(&file, len).map_err(|source| SegmentCreateError::Map {
            name: name.to_string(),
            len,
            source,
        })?;
        Ok(Self::from_parts(file, map, name.to_string()))
    }

    /// Maps a segment whose fd this process inherited. Checks the size and that it is sealed
    /// against shrinking (a peer could otherwise truncate it under us and fault our reads).
    ///
    /// # Safety
    ///
    /// `fd` must be an open file descriptor this process owns and that nothing else will close;
    /// the segment takes ownership of it.
    pub unsafe fn open_inherited(fd: RawFd, expected_len: usize) -> Result<Self, SegmentOpenError> {
        // SAFETY: the caller hands over ownership of an open fd.
        let file = unsafe { File::from_raw_fd(fd) };
        let actual = file
            .metadata()
            .map_err(|source| SegmentOpenError::NotOpen { fd, source })?
            .len();
        if actual != expected_len as u64 {
            return Err(SegmentOpenError::WrongSize {
                fd,
                expected: expected_len,
                actual,
            });
        }
        let seals = fcntl(file.as_fd(), FcntlArg::F_GET_SEALS).unwrap_or(0);
        if seals & SealFlag::F_SEAL_SHRINK.bits() == 0 {
            return Err(SegmentOpenError::NotSealed { fd, seals });
        }
        let map = map(&file, expected_len).map_err(|source| SegmentOpenError::Map {
            fd,
            len: expected_len,
            source,
        })?;
        Ok(Self::from_parts(file, map, format!("inherited-fd-{fd}")))
    }

    fn from_parts(file: File, map: MmapRaw, name: String) -> Self {
        // SAFETY: the mapping is page-aligned (so 128-aligned), `map.len()` bytes long, and
        // lives in `self.map`, which is dropped after `memory` (field order) and never remapped.
        let memory = unsafe { RawMemory::new(map.as_mut_ptr(), map.len()) };
        Self {
            file,
            map,
            memory,
            name,
        }
    }

    /// A second mapping of the same memory through a duplicated fd (for a second owner in
    /// this process, such as an embedding host's end of a ring).
    pub fn try_clone(&self) -> std::io::Result<Self> {
        let file = self.file.try_clone()?;
        let map = map(&file, self.len())?;
        Ok(Self::from_parts(file, map, self.name.clone()))
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the segment is empty (never: segments are at least a page).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The segment's fd number (close-on-exec).
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The fd to hand to a child: call [`clear_cloexec`] on it in the child between fork and
    /// exec so that exactly the children that need it inherit it.
    pub fn inheritable_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The base address of this process's mapping (differs between processes).
    pub fn as_ptr(&self) -> *const u8 {
        self.map.as_ptr()
    }

    /// Raw write access to the mapping, for tests and tools that corrupt it on purpose.
    ///
    /// # Safety
    ///
    /// Writes race with any ring using the segment; only for fault injection.
    pub unsafe fn write_at(&self, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= self.len(), "write_at out of bounds");
        // SAFETY: in bounds (asserted); the caller accepts the race (fault injection).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.as_mut_ptr().add(offset),
                bytes.len(),
            );
        }
    }
}

/// Lowest fd number a segment may have: a child's fds 0-9 are reserved for its standard streams
/// and its key pipe (fd 3), so an inherited segment fd must never collide with them.
pub const FIRST_SEGMENT_FD: RawFd = 10;

/// Moves `fd` to a number at or above [`FIRST_SEGMENT_FD`] (close-on-exec kept).
fn above_reserved(fd: OwnedFd) -> Result<OwnedFd, nix::Error> {
    if fd.as_raw_fd() >= FIRST_SEGMENT_FD {
        return Ok(fd);
    }
    let moved = fcntl(fd.as_fd(), FcntlArg::F_DUPFD_CLOEXEC(FIRST_SEGMENT_FD))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// Clears `FD_CLOEXEC` on `fd`. Async-signal-safe: meant for `pre_exec` in a child.
pub fn clear_cloexec(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl with F_GETFD/F_SETFD on an integer fd has no memory-safety requirements.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

// SAFETY: forwards to the `RawMemory` over this segment's mapping, which it keeps alive.
unsafe impl RingMemory for Segment {
    fn len(&self) -> usize {
        self.memory.len()
    }
    unsafe fn load_u64(&self, offset: usize, order: Ordering) -> u64 {
        // SAFETY: same preconditions, forwarded.
        unsafe { self.memory.load_u64(offset, order) }
    }
    unsafe fn store_u64(&self, offset: usize, value: u64, order: Ordering) {
        // SAFETY: same preconditions, forwarded.
        unsafe { self.memory.store_u64(offset, value, order) }
    }
    unsafe fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        // SAFETY: same preconditions, forwarded.
        unsafe { self.memory.load_u32(offset, order) }
    }
    unsafe fn store_u32(&self, offset: usize, value: u32, order: Ordering) {
        // SAFETY: same preconditions, forwarded.
        unsafe { self.memory.store_u32(offset, value, order) }
    }
    unsafe fn bytes_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        // SAFETY: same preconditions, forwarded.
        unsafe { self.memory.bytes_mut(offset, len) }
    }
    unsafe fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        // SAFETY: same preconditions, forwarded.
        unsafe { self.memory.bytes(offset, len) }
    }
    unsafe fn wait_u32(&self, offset: usize, expected: u32, timeout: Duration) {
        // SAFETY: same preconditions, forwarded.
        unsafe { self.memory.wait_u32(offset, expected, timeout) }
    }
    unsafe fn wake_u32(&self, offset: usize) {
        // SAFETY: same preconditions, forwarded.
        unsafe { self.memory.wake_u32(offset) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_segment_is_sealed_zeroed_and_unnamed() {
        let segment = Segment::create("test-segment", 1 << 16).unwrap();
        assert_eq!(segment.len(), 1 << 16);
        // SAFETY: offset 0 is aligned and in bounds.
        assert_eq!(unsafe { segment.load_u64(0, Ordering::Relaxed) }, 0);
        let seals = fcntl(segment.file.as_fd(), FcntlArg::F_GET_SEALS).unwrap();
        assert_ne!(seals & SealFlag::F_SEAL_GROW.bits(), 0);
        assert!(
            segment.file.set_len(1 << 12).is_err(),
            "sealed segments cannot shrink"
        );
        let link = std::fs::read_link(format!("/proc/self/fd/{}", segment.fd())).unwrap();
        assert!(link.to_string_lossy().starts_with("/memfd:"), "{link:?}");
    }

    #[test]
    fn inherited_fd_must_match_size() {
        let segment = Segment::create("size-check", 1 << 16).unwrap();
        let dup = nix::unistd::dup(segment.file.as_fd()).unwrap();
        // SAFETY: `dup` is a fresh fd owned by nothing else.
        let wrong = unsafe { Segment::open_inherited(dup.into_raw_fd_compat(), 1 << 12) };
        assert!(matches!(wrong, Err(SegmentOpenError::WrongSize { .. })));
    }

    trait IntoRaw {
        fn into_raw_fd_compat(self) -> RawFd;
    }
    impl IntoRaw for OwnedFd {
        fn into_raw_fd_compat(self) -> RawFd {
            std::os::fd::IntoRawFd::into_raw_fd(self)
        }
    }
}
