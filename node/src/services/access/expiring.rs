//! A bounded map of entries that expire: nonces handed out, nonces spent, sessions.
//!
//! When full, expired entries go first, and if none has expired the new entry is refused:
//! a flood of new entries can never push out live ones (pending sign-ins, signed-in viewers).

use std::{collections::HashMap, hash::Hash};

/// The map is full of live entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

#[derive(Debug)]
pub struct ExpiringMap<K, V> {
    entries: HashMap<K, (V, u64)>,
    capacity: usize,
    /// When expired entries were last dropped: a full map is scanned at most once a second,
    /// so a flood against a full map costs a lookup per request, not a scan.
    pruned_at: u64,
}

impl<K: Eq + Hash, V> ExpiringMap<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            pruned_at: 0,
        }
    }

    /// Inserts `value` until `expires` (unix seconds); at `now`, a full map first drops
    /// what has expired, and refuses if nothing has.
    pub fn insert(&mut self, key: K, value: V, expires: u64, now: u64) -> Result<(), Full> {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            if self.pruned_at == now {
                return Err(Full);
            }
            self.pruned_at = now;
            self.entries.retain(|_, (_, e)| *e > now);
            if self.entries.len() >= self.capacity {
                return Err(Full);
            }
        }
        self.entries.insert(key, (value, expires));
        Ok(())
    }

    /// The live value of `key` at `now`.
    pub fn get(&self, key: &K, now: u64) -> Option<&V> {
        self.entries
            .get(key)
            .filter(|(_, e)| *e > now)
            .map(|(v, _)| v)
    }

    /// Takes `key` out, live or not: its value and when it expires.
    pub fn remove(&mut self, key: &K) -> Option<(V, u64)> {
        self.entries.remove(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_map_drops_the_expired_and_refuses_rather_than_evict_the_live() {
        let mut map = ExpiringMap::new(3);
        map.insert("live", 1, 100, 0).expect("room");
        map.insert("old", 2, 10, 0).expect("room");
        map.insert("older", 3, 5, 0).expect("room");
        // At 20, two have expired: they make room.
        map.insert("new", 4, 100, 20).expect("expired ones go");
        assert_eq!(map.get(&"live", 20), Some(&1));
        assert_eq!(map.get(&"old", 20), None);
        map.insert("newer", 5, 100, 20).expect("room");
        // Full of live entries: refused, nothing evicted.
        assert_eq!(map.insert("flood", 6, 100, 20), Err(Full));
        assert_eq!(map.get(&"live", 20), Some(&1));
        // Replacing a present key needs no room.
        map.insert("live", 7, 100, 20).expect("replace");
        assert_eq!(map.remove(&"live"), Some((7, 100)));
        assert_eq!(map.get(&"new", 200), None, "expired by time");
    }
}
