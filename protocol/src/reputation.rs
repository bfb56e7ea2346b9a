//! The provider reputation book a fetcher keeps: who served good bytes, who failed, and
//! who served bytes that did not match their hash.
//!
//! iroh-blobs verifies every 16 KiB group against the hash and reports which provider
//! failed, but it keeps no memory of bad providers. This book is that memory. It is pure
//! state: callers pass the time in (seconds since the Unix epoch) and persist the entries
//! where they like.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// A provider's node key.
pub type ProviderKey = [u8; 32];

/// How a provider let a fetch down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// Could not be dialled, or closed the connection.
    Unreachable,
    /// Connected but sent nothing for longer than the progress timeout.
    Stalled,
    /// Sent bytes that failed BLAKE3 verification: malicious or broken.
    Corrupt,
}

/// What the book knows of one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    pub score: i32,
    pub successes: u64,
    pub failures: u64,
    pub corrupt: u64,
    /// Not used as a provider before this time.
    pub banned_until: u64,
    pub last_seen: u64,
}

/// Provider standings, bounded in size.
#[derive(Debug, Clone)]
pub struct ProviderBook {
    entries: HashMap<ProviderKey, Standing>,
    capacity: usize,
}

/// Score changes. A corrupt transfer outweighs many good ones: one is enough to ban.
const SUCCESS_REWARD: i32 = 1;
const MAX_SCORE: i32 = 50;
const UNREACHABLE_PENALTY: i32 = 5;
const STALL_PENALTY: i32 = 10;
const CORRUPT_PENALTY: i32 = 100;
const MIN_SCORE: i32 = -1000;
/// A provider that served corrupt bytes is not asked again for this long.
pub const CORRUPT_BAN_SECS: u64 = 3600;
/// Repeated plain failures (score at or below this) earn a short pause.
const FLAKY_SCORE: i32 = -30;
const FLAKY_PAUSE_SECS: u64 = 60;

impl ProviderBook {
    /// A book holding at most `capacity` providers; the one seen longest ago (and not banned)
    /// is forgotten first.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Restores an entry, e.g. from the node database.
    pub fn restore(&mut self, key: ProviderKey, standing: Standing) {
        self.make_room(&key);
        self.entries.insert(key, standing);
    }

    pub fn get(&self, key: &ProviderKey) -> Option<&Standing> {
        self.entries.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ProviderKey, &Standing)> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn record_success(&mut self, key: ProviderKey, now: u64) -> &Standing {
        let entry = self.entry(key, now);
        entry.successes += 1;
        entry.score = (entry.score + SUCCESS_REWARD).min(MAX_SCORE);
        entry
    }

    pub fn record_failure(&mut self, key: ProviderKey, failure: Failure, now: u64) -> &Standing {
        let entry = self.entry(key, now);
        entry.failures += 1;
        let penalty = match failure {
            Failure::Unreachable => UNREACHABLE_PENALTY,
            Failure::Stalled => STALL_PENALTY,
            Failure::Corrupt => CORRUPT_PENALTY,
        };
        entry.score = (entry.score - penalty).max(MIN_SCORE);
        if failure == Failure::Corrupt {
            entry.corrupt += 1;
            entry.banned_until = entry.banned_until.max(now + CORRUPT_BAN_SECS);
        } else if entry.score <= FLAKY_SCORE {
            entry.banned_until = entry.banned_until.max(now + FLAKY_PAUSE_SECS);
        }
        entry
    }

    pub fn is_banned(&self, key: &ProviderKey, now: u64) -> bool {
        self.entries.get(key).is_some_and(|s| s.banned_until > now)
    }

    /// Orders `candidates` best first and drops banned ones. Unknown providers rank as 0,
    /// above providers that have failed and below those that have served well.
    pub fn rank(
        &self,
        candidates: impl IntoIterator<Item = ProviderKey>,
        now: u64,
    ) -> Vec<ProviderKey> {
        let mut ranked: Vec<(i32, ProviderKey)> = candidates
            .into_iter()
            .filter(|key| !self.is_banned(key, now))
            .map(|key| (self.entries.get(&key).map_or(0, |s| s.score), key))
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        ranked.dedup_by(|a, b| a.1 == b.1);
        ranked.into_iter().map(|(_, key)| key).collect()
    }

    fn entry(&mut self, key: ProviderKey, now: u64) -> &mut Standing {
        if !self.entries.contains_key(&key) {
            self.make_room(&key);
        }
        let entry = self.entries.entry(key).or_insert(Standing {
            score: 0,
            successes: 0,
            failures: 0,
            corrupt: 0,
            banned_until: 0,
            last_seen: now,
        });
        entry.last_seen = now;
        entry
    }

    fn make_room(&mut self, incoming: &ProviderKey) {
        if self.entries.len() < self.capacity || self.entries.contains_key(incoming) {
            return;
        }
        // Forget the stalest entry, preferring ones that carry no ban: a ban is the one
        // thing the book must not lose to churn.
        let victim = self
            .entries
            .iter()
            .min_by_key(|(_, s)| (s.banned_until > 0, s.last_seen))
            .map(|(k, _)| *k);
        if let Some(victim) = victim {
            self.entries.remove(&victim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ProviderKey = [1; 32];
    const B: ProviderKey = [2; 32];
    const C: ProviderKey = [3; 32];

    #[test]
    fn corrupt_provider_is_banned_then_forgiven() {
        let mut book = ProviderBook::new(10);
        book.record_success(A, 0);
        book.record_failure(A, Failure::Corrupt, 10);
        assert!(book.is_banned(&A, 11));
        assert_eq!(book.rank([A, B], 11), vec![B]);
        assert!(!book.is_banned(&A, 10 + CORRUPT_BAN_SECS));
        assert_eq!(book.get(&A).map(|s| s.corrupt), Some(1));
    }

    #[test]
    fn good_providers_rank_first_and_flaky_ones_pause() {
        let mut book = ProviderBook::new(10);
        book.record_success(B, 0);
        book.record_failure(C, Failure::Unreachable, 0);
        assert_eq!(book.rank([C, A, B, A], 1), vec![B, A, C]);
        for _ in 0..3 {
            book.record_failure(C, Failure::Stalled, 5);
        }
        assert!(book.is_banned(&C, 6));
        assert!(!book.is_banned(&C, 5 + FLAKY_PAUSE_SECS));
    }

    #[test]
    fn capacity_is_bounded_and_bans_are_kept() {
        let mut book = ProviderBook::new(2);
        book.record_failure(A, Failure::Corrupt, 0);
        book.record_success(B, 1);
        book.record_success(C, 2);
        assert_eq!(book.len(), 2);
        assert!(book.is_banned(&A, 3), "the ban survives churn");
        assert!(book.get(&B).is_none(), "the stalest unbanned entry went");
    }
}
