//! Messages: the types that travel on edges, and how they cross a process boundary.
//!
//! A message is a plain Rust value that `rkyv` can archive and bytecheck can validate. Inside a
//! process a value is never serialized: the next node receives a reference to the value its
//! upstream node emitted ([`Value`]). Only at a process boundary is it encoded, once, straight
//! into the claimed ring slot ([`encode_into`]); the consuming worker validates the archive in
//! place and decodes it ([`Message::decode`]) for its first node. The same node code therefore
//! runs unchanged in every placement.

use std::any::TypeId;
use std::fmt;

use rkyv::api::high::HighValidator;
use rkyv::api::low::LowSerializer;
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::{Arena, ArenaHandle};
use rkyv::ser::writer::Buffer;
use rkyv::{Archive, Deserialize, Portable, Serialize};

/// The serializer every message is encoded with: a fixed slot writer plus a scratch arena, and
/// no pointer sharing (messages are trees; sharing would only add a hash map per encode).
pub type SlotSerializer<'a, 'b> = LowSerializer<Buffer<'b>, ArenaHandle<'a>, rancor::Error>;

/// Alignment of every encoded message (rkyv archives of our types need at most 16).
pub const MESSAGE_ALIGN: usize = 16;

/// The deserializer messages decode with: no shared-pointer pool (messages are trees).
pub type MessageDeserializer = rancor::Strategy<(), rancor::Error>;

/// A type that can travel on an edge.
///
/// Implemented for every `Archive + Serialize + Deserialize` type whose archive is checkable:
/// declare a type with [`message!`](crate::message) (or derive
/// `rkyv::{Archive, Serialize, Deserialize}` on it) and it is a message.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a message: it cannot travel on an edge between nodes",
    label = "not a message",
    note = "declare it with `stream_kernel::message! {{ pub struct ... }}` (or derive `rkyv::Archive, rkyv::Serialize, rkyv::Deserialize` on it, with `#[rkyv(crate = stream_kernel::rkyv)]` when rkyv is not a dependency of yours)"
)]
pub trait Message:
    Archive + for<'a, 'b> Serialize<SlotSerializer<'a, 'b>> + Send + 'static
{
    /// Validates `bytes` (rkyv bytecheck) and returns the archived value, in place.
    fn access(bytes: &[u8]) -> Result<&Self::Archived, PayloadError>;

    /// Returns the archived value without validation.
    ///
    /// # Safety
    ///
    /// `bytes` must be exactly the output of [`encode_into`] for a `Self`, produced by this same
    /// binary, aligned to [`MESSAGE_ALIGN`], and not modified since.
    unsafe fn access_trusted(bytes: &[u8]) -> &Self::Archived;

    /// Validates `bytes` and decodes the value (what a node in another process receives).
    fn decode(bytes: &[u8]) -> Result<Self, PayloadError>
    where
        Self: Sized;

    /// Decodes without validation.
    ///
    /// # Safety
    ///
    /// As for [`Message::access_trusted`].
    unsafe fn decode_trusted(bytes: &[u8]) -> Result<Self, PayloadError>
    where
        Self: Sized;
}

/// Declares a message type: the struct or enum, with the derives a message needs, through this
/// crate's own rkyv (nothing to add to `Cargo.toml`, always the matching version).
///
/// ```
/// stream_kernel::message! {
///     /// A word and how often it was seen.
///     #[derive(Debug, Clone, PartialEq)]
///     pub struct WordCount {
///         pub word: String,
///         pub count: u64,
///     }
/// }
///
/// fn is_a_message<T: stream_kernel::graph::Message>() {}
/// is_a_message::<WordCount>();
/// ```
#[macro_export]
macro_rules! message {
    ($(#[$meta:meta])* $vis:vis struct $($rest:tt)*) => {
        #[derive($crate::rkyv::Archive, $crate::rkyv::Serialize, $crate::rkyv::Deserialize)]
        #[rkyv(crate = $crate::rkyv)]
        $(#[$meta])*
        $vis struct $($rest)*
    };
    ($(#[$meta:meta])* $vis:vis enum $($rest:tt)*) => {
        #[derive($crate::rkyv::Archive, $crate::rkyv::Serialize, $crate::rkyv::Deserialize)]
        #[rkyv(crate = $crate::rkyv)]
        $(#[$meta])*
        $vis enum $($rest)*
    };
}

fn payload_error<T>(len: usize, reason: impl fmt::Display) -> PayloadError {
    PayloadError {
        type_name: std::any::type_name::<T>(),
        len,
        reason: reason.to_string(),
    }
}

impl<T> Message for T
where
    T: Archive + for<'a, 'b> Serialize<SlotSerializer<'a, 'b>> + Send + 'static,
    T::Archived: Portable
        + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + Deserialize<T, MessageDeserializer>,
{
    fn access(bytes: &[u8]) -> Result<&Self::Archived, PayloadError> {
        rkyv::access::<T::Archived, rancor::Error>(bytes)
            .map_err(|e| payload_error::<T>(bytes.len(), e))
    }

    unsafe fn access_trusted(bytes: &[u8]) -> &Self::Archived {
        // SAFETY: the caller guarantees `bytes` is a valid, aligned archive of `T` produced by
        // `encode_into` in this binary (see the trait method's `# Safety`).
        unsafe { rkyv::access_unchecked::<T::Archived>(bytes) }
    }

    fn decode(bytes: &[u8]) -> Result<Self, PayloadError> {
        let archived = Self::access(bytes)?;
        rkyv::api::deserialize_using::<T, (), rancor::Error>(archived, &mut ())
            .map_err(|e| payload_error::<T>(bytes.len(), e))
    }

    unsafe fn decode_trusted(bytes: &[u8]) -> Result<Self, PayloadError> {
        // SAFETY: forwarded to the caller (see `# Safety`).
        let archived = unsafe { Self::access_trusted(bytes) };
        rkyv::api::deserialize_using::<T, (), rancor::Error>(archived, &mut ())
            .map_err(|e| payload_error::<T>(bytes.len(), e))
    }
}

/// A value on its way to the next node: the value itself, read by reference by a node of the
/// same process, and how to encode it for a node in another process. Built by
/// [`crate::graph::Emitter`]; runtimes resolve where it goes.
///
/// Two words: a pointer to the value and one static table per message type, so that handing a
/// value to the next node copies 16 bytes.
#[derive(Clone, Copy)]
pub struct Value<'v> {
    /// Points to a live `T` whose table is `table` (set only by [`Value::of`]).
    value: *const (),
    table: &'static ValueTable,
    _borrow: std::marker::PhantomData<&'v ()>,
}

/// What a [`Value`] knows about its type: one constant per message type.
struct ValueTable {
    id: TypeId,
    name: fn() -> &'static str,
    encode: unsafe fn(*const (), &mut [u8], &mut Arena) -> Result<usize, EncodeError>,
}

/// The [`ValueTable`] of every message type, as an associated constant (so a reference to it
/// is promoted to a `'static`).
trait HasValueTable {
    const TABLE: ValueTable;
}

impl<T: Message> HasValueTable for T {
    const TABLE: ValueTable = ValueTable {
        id: TypeId::of::<T>(),
        name: std::any::type_name::<T>,
        encode: encode_erased::<T>,
    };
}

impl<'v> Value<'v> {
    /// A reference to `value`.
    #[inline]
    pub fn of<T: Message>(value: &'v T) -> Self {
        Self {
            value: (value as *const T).cast(),
            table: &<T as HasValueTable>::TABLE,
            _borrow: std::marker::PhantomData,
        }
    }

    /// The value's type.
    pub fn ty(&self) -> MessageType {
        MessageType {
            id: self.table.id,
            full_name: (self.table.name)(),
        }
    }

    /// The value, when it is a `T` (a type check, no copy).
    #[inline]
    pub fn downcast<T: 'static>(&self) -> Option<&'v T> {
        // SAFETY: `value` points to a `T` borrowed for 'v when the table is `T`'s (the only
        // way to build a `Value` is `Value::of`, which sets both from the same reference).
        (self.table.id == TypeId::of::<T>()).then(|| unsafe { &*self.value.cast::<T>() })
    }

    /// Encodes the value into `slot` (see [`encode_into`]).
    pub fn encode(&self, slot: &mut [u8], arena: &mut Arena) -> Result<usize, EncodeError> {
        // SAFETY: `encode` was instantiated for the type of `value` by `Value::of`.
        unsafe { (self.table.encode)(self.value, slot, arena) }
    }
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value({})", self.ty())
    }
}

/// # Safety
///
/// `value` must point to a live `T`.
unsafe fn encode_erased<T: Message>(
    value: *const (),
    slot: &mut [u8],
    arena: &mut Arena,
) -> Result<usize, EncodeError> {
    // SAFETY: the caller guarantees `value` points to a live `T`.
    encode_into(unsafe { &*value.cast::<T>() }, slot, arena)
}

/// An archive that failed validation: corrupted, truncated or of another type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payload of {len} bytes is not a valid archived {type_name}: {reason}")]
pub struct PayloadError {
    /// The type the payload should hold.
    pub type_name: &'static str,
    /// Bytes of the payload.
    pub len: usize,
    /// What bytecheck found.
    pub reason: String,
}

/// Encoding did not fit the slot it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("encoded message does not fit in {slot_len} bytes")]
pub struct EncodeError {
    /// Bytes of the slot.
    pub slot_len: usize,
}

/// Serializes `value` into the start of `slot` and returns the encoded length.
///
/// `slot` must start at a [`MESSAGE_ALIGN`]-aligned address for the result to be accessible.
/// On error nothing past `slot` was touched; the caller may retry with a larger slot.
pub fn encode_into<T: Message>(
    value: &T,
    slot: &mut [u8],
    arena: &mut Arena,
) -> Result<usize, EncodeError> {
    debug_assert_eq!(slot.as_ptr() as usize % MESSAGE_ALIGN, 0, "unaligned slot");
    let slot_len = slot.len();
    encode_into_buffer(value, Buffer::from(slot), slot_len, arena)
}

/// The one encoding path of [`encode_into`] and [`encode_into_uninit`].
fn encode_into_buffer<T: Message>(
    value: &T,
    writer: Buffer<'_>,
    slot_len: usize,
    arena: &mut Arena,
) -> Result<usize, EncodeError> {
    rkyv::api::low::to_bytes_in_with_alloc::<_, _, rancor::Error>(value, writer, arena.acquire())
        .map(|written| written.len())
        .map_err(|_| EncodeError { slot_len })
}

/// Serializes `value` into the start of `slot`, memory that need not be initialised (a ring
/// slot or a loaned shared-memory sample), and returns the encoded length: every byte of
/// `slot[..len]` is written (padding included), so it may then be read as initialised.
///
/// `slot` must start at a [`MESSAGE_ALIGN`]-aligned address for the result to be accessible.
pub fn encode_into_uninit<T: Message>(
    value: &T,
    slot: &mut [std::mem::MaybeUninit<u8>],
    arena: &mut Arena,
) -> Result<usize, EncodeError> {
    debug_assert_eq!(slot.as_ptr() as usize % MESSAGE_ALIGN, 0, "unaligned slot");
    let slot_len = slot.len();
    encode_into_buffer(value, Buffer::from(slot), slot_len, arena)
}

/// The identity of a message type, for edge type checks.
///
/// Cheap to build on every emit: the name is shortened only when displayed.
#[derive(Clone, Copy)]
pub struct MessageType {
    /// The type's id.
    pub id: TypeId,
    full_name: &'static str,
}

impl MessageType {
    /// The type `T`.
    #[inline]
    pub fn of<T: 'static>() -> Self {
        Self {
            id: TypeId::of::<T>(),
            full_name: std::any::type_name::<T>(),
        }
    }

    /// The type's name without its module path (`RawLine`).
    pub fn name(&self) -> &'static str {
        short_type_name(self.full_name)
    }
}

impl PartialEq for MessageType {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for MessageType {}

impl std::hash::Hash for MessageType {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl fmt::Debug for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `my_app::messages::RawLine` -> `RawLine` (generic-free types only).
fn short_type_name(full: &'static str) -> &'static str {
    if full.contains('<') {
        return full;
    }
    full.rsplit("::").next().unwrap_or(full)
}

/// A heap buffer whose start is [`MESSAGE_ALIGN`]-aligned, reused across records.
#[derive(Debug, Clone)]
pub struct AlignedBuf {
    words: Vec<u128>,
}

impl Default for AlignedBuf {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl AlignedBuf {
    /// A zeroed buffer of at least `bytes` bytes, 16-aligned.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            words: vec![0; bytes.div_ceil(16).max(1)],
        }
    }

    /// Bytes the buffer holds.
    pub fn capacity(&self) -> usize {
        self.words.len() * 16
    }

    /// Grows to at least `bytes` (contents not preserved).
    pub fn grow_to(&mut self, bytes: usize) {
        if bytes > self.capacity() {
            self.words = vec![0; bytes.div_ceil(16)];
        }
    }

    /// The buffer's bytes, writable.
    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        let len = self.capacity();
        // SAFETY: `words` is a live, initialised allocation of `len` bytes; `u8` has no
        // alignment or validity requirements, and the `&mut self` borrow makes it exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), len) }
    }

    /// The buffer's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        let len = self.capacity();
        // SAFETY: as in `as_mut_bytes`, with a shared borrow.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), len) }
    }
}

/// Largest message the scratch encoder will grow to (matches the largest ring record).
pub const MAX_SCRATCH_BYTES: usize = 64 * 1024 * 1024;

/// Encodes `value` into `buf`, growing it as needed; returns the encoded length.
pub fn encode_growing(
    value: Value<'_>,
    buf: &mut AlignedBuf,
    arena: &mut Arena,
) -> Result<usize, EncodeError> {
    loop {
        match value.encode(buf.as_mut_bytes(), arena) {
            Ok(len) => return Ok(len),
            Err(e) if buf.capacity() >= MAX_SCRATCH_BYTES => return Err(e),
            Err(_) => {
                let next = (buf.capacity() * 2).min(MAX_SCRATCH_BYTES);
                buf.grow_to(next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
    struct Sample {
        id: String,
        amount: i64,
    }

    #[test]
    fn encode_then_access_round_trips() {
        let mut buf = AlignedBuf::with_capacity(256);
        let mut arena = Arena::new();
        let value = Sample {
            id: "15887".into(),
            amount: 331_847,
        };
        let len = encode_into(&value, buf.as_mut_bytes(), &mut arena).unwrap();
        let archived = Sample::access(&buf.as_bytes()[..len]).unwrap();
        assert_eq!(archived.id.as_str(), "15887");
        assert_eq!(archived.amount.to_native(), 331_847);
    }

    #[test]
    fn encode_reports_a_slot_that_is_too_small() {
        let mut buf = AlignedBuf::with_capacity(16);
        let mut arena = Arena::new();
        let value = Sample {
            id: "x".repeat(100),
            amount: 1,
        };
        let slot = &mut buf.as_mut_bytes()[..16];
        assert_eq!(
            encode_into(&value, slot, &mut arena),
            Err(EncodeError { slot_len: 16 })
        );
        let mut growing = AlignedBuf::with_capacity(16);
        let len = encode_growing(Value::of(&value), &mut growing, &mut arena).unwrap();
        assert!(len > 100);
        assert_eq!(Sample::decode(&growing.as_bytes()[..len]).unwrap(), value);
    }

    #[test]
    fn access_rejects_out_of_bounds_pointers_and_short_input() {
        let mut buf = AlignedBuf::with_capacity(256);
        let mut arena = Arena::new();
        let value = Sample {
            id: "x".repeat(100),
            amount: 7,
        };
        let len = encode_into(&value, buf.as_mut_bytes(), &mut arena).unwrap();
        // The root (last 16 bytes) starts with the string's length and relative offset.
        let root = len - 16;
        buf.as_mut_bytes()[root + 4..root + 8].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
        assert!(Sample::access(&buf.as_bytes()[..len]).is_err());
        assert!(Sample::access(&buf.as_bytes()[..8]).is_err());
    }
}
