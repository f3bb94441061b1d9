//! The replay guard: a bounded cache of recently seen nonces.
//!
//! A frame's nonce is remembered only after every other check passed. Entries older than the
//! TTL are evicted first (frames that old are rejected as expired anyway, so forgetting their
//! nonces is safe); when the cache is still full, the frame is rejected with `NonceCacheFull`,
//! never silently admitted. Memory stays bounded by `capacity` whatever a peer sends.

use std::collections::{HashMap, VecDeque};

/// What the cache says about a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceVerdict {
    /// First sighting; now remembered.
    Fresh,
    /// Seen before within the TTL.
    Replayed,
    /// The cache is full of unexpired nonces.
    Full,
}

/// Nonces seen in the last TTL, at most `capacity` of them.
#[derive(Debug)]
pub struct NonceCache {
    capacity: usize,
    ttl_ms: u64,
    seen: HashMap<[u8; 16], u64>,
    /// Insertion order with the time each nonce was admitted (oldest first).
    order: VecDeque<([u8; 16], u64)>,
}

impl NonceCache {
    /// A cache of at most `capacity` nonces, each remembered for `ttl_ms`.
    pub fn new(capacity: usize, ttl_ms: u64) -> Self {
        Self {
            capacity: capacity.max(1),
            ttl_ms,
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Checks `nonce` at time `now_ms`, remembering it when fresh.
    pub fn admit(&mut self, nonce: [u8; 16], now_ms: u64) -> NonceVerdict {
        if self.seen.contains_key(&nonce) {
            return NonceVerdict::Replayed;
        }
        self.evict_expired(now_ms);
        if self.seen.len() >= self.capacity {
            return NonceVerdict::Full;
        }
        self.seen.insert(nonce, now_ms);
        self.order.push_back((nonce, now_ms));
        NonceVerdict::Fresh
    }

    fn evict_expired(&mut self, now_ms: u64) {
        while let Some((nonce, admitted)) = self.order.front().copied() {
            if now_ms.saturating_sub(admitted) <= self.ttl_ms {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&nonce);
        }
    }

    /// Nonces remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_are_caught_and_full_caches_refuse() {
        let mut cache = NonceCache::new(2, 1000);
        assert_eq!(cache.admit([1; 16], 0), NonceVerdict::Fresh);
        assert_eq!(cache.admit([1; 16], 10), NonceVerdict::Replayed);
        assert_eq!(cache.admit([2; 16], 20), NonceVerdict::Fresh);
        assert_eq!(cache.admit([3; 16], 30), NonceVerdict::Full);
        // After the TTL the oldest entries go, making room.
        assert_eq!(cache.admit([3; 16], 1015), NonceVerdict::Fresh);
        assert_eq!(cache.len(), 2);
    }
}
