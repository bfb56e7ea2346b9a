//! A byte-bounded, least-recently-used cache of hot segments in memory, so that the
//! segments many viewers ask for are answered without touching the blob store. Large
//! segments are kept in unnamed files under the data directory and sent without copying (see
//! [`crate::zerocopy`]).

use std::{
    collections::{HashMap, VecDeque},
    path::PathBuf,
    sync::Mutex,
};

use bytes::Bytes;
use streamgate_protocol::ContentHash;

/// Smallest entry kept file-backed: below this a copy costs less than a file and a mapping.
const FILE_BACKED_AT_LEAST: u64 = 64 * 1024;

#[derive(Debug)]
pub struct HotCache {
    budget: u64,
    /// Where the unnamed files of large entries live.
    dir: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<ContentHash, (Bytes, u64)>,
    /// Use order: (hash, stamp); stale pairs (older stamp than the entry's) are skipped.
    order: VecDeque<(ContentHash, u64)>,
    used: u64,
    clock: u64,
}

impl HotCache {
    /// A cache holding at most `budget` bytes, large entries in unnamed files in `dir`;
    /// a budget of 0 disables it.
    pub fn new(budget: u64, dir: PathBuf) -> Self {
        Self {
            budget,
            dir,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Largest blob worth caching: an eighth of the budget, so one blob never flushes the rest.
    pub fn max_entry(&self) -> u64 {
        self.budget / 8
    }

    pub fn get(&self, hash: &ContentHash) -> Option<Bytes> {
        let mut inner = self.inner.lock().ok()?;
        inner.clock += 1;
        let stamp = inner.clock;
        let bytes = {
            let entry = inner.entries.get_mut(hash)?;
            entry.1 = stamp;
            entry.0.clone()
        };
        inner.order.push_back((*hash, stamp));
        inner.compact();
        Some(bytes)
    }

    /// Caches `bytes` and returns what to serve them from: the cached copy, file-backed
    /// when it is large enough to be worth sending without a copy.
    pub fn insert(&self, hash: ContentHash, bytes: Bytes) -> Bytes {
        let len = bytes.len() as u64;
        if len == 0 || len > self.max_entry() {
            return bytes;
        }
        let bytes = if len >= FILE_BACKED_AT_LEAST {
            crate::zerocopy::file_backed(&self.dir, &bytes).unwrap_or_else(|e| {
                tracing::debug!(
                    "cannot keep {} in a file: {e}; keeping it in memory",
                    hash.short()
                );
                bytes
            })
        } else {
            bytes
        };
        let Ok(mut inner) = self.inner.lock() else {
            return bytes;
        };
        inner.clock += 1;
        let stamp = inner.clock;
        if let Some((old, _)) = inner.entries.insert(hash, (bytes.clone(), stamp)) {
            inner.used -= old.len() as u64;
        }
        inner.used += len;
        inner.order.push_back((hash, stamp));
        while inner.used > self.budget {
            let Some((victim, stamp)) = inner.order.pop_front() else {
                break;
            };
            if inner.entries.get(&victim).is_some_and(|(_, s)| *s == stamp)
                && let Some((gone, _)) = inner.entries.remove(&victim)
            {
                inner.used -= gone.len() as u64;
            }
        }
        inner.compact();
        bytes
    }

    pub fn used(&self) -> u64 {
        self.inner.lock().map(|i| i.used).unwrap_or(0)
    }
}

impl Inner {
    /// Drops stale order entries once they dominate, keeping the queue proportional to
    /// the number of cached blobs.
    fn compact(&mut self) {
        if self.order.len() > 4 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order
                .retain(|(h, s)| entries.get(h).is_some_and(|(_, stamp)| stamp == s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> ContentHash {
        ContentHash::of(&[n])
    }

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let cache = HotCache::new(800, std::env::temp_dir());
        for n in 0..3 {
            cache.insert(h(n), Bytes::from(vec![n; 100]));
        }
        assert!(cache.get(&h(0)).is_some(), "touch 0 so 1 is the oldest");
        for n in 3..9 {
            cache.insert(h(n), Bytes::from(vec![n; 100]));
        }
        assert!(cache.used() <= 800);
        assert!(cache.get(&h(0)).is_some(), "recently used stays");
        assert!(cache.get(&h(1)).is_none(), "least recently used went first");
        assert!(cache.get(&h(8)).is_some());
        cache.insert(h(9), Bytes::from(vec![9; 101]));
        assert!(
            cache.get(&h(9)).is_none(),
            "bigger than an eighth of the budget: not cached"
        );
    }
}
