//! Cached ownership decisions, keyed by chain, token standard and contract, viewer and the
//! rest of the policy, with a time-to-live, and dropped early by the event follower on any
//! transfer that touches the viewer.
//!
//! A check that is about to ask the chain first registers its (chain, contract, viewer)
//! ([`GrantCache::begin`]); a transfer the follower sees meanwhile bumps that registration's
//! version, and the answer is then not cached ([`Check::cache`]). So a transfer that lands
//! between the chain's answer and the insert can never leave a stale grant behind.

use std::{collections::HashMap, sync::Mutex};

use alloy::primitives::{Address, U256};
use streamgate_protocol::access::TokenStandard;

/// Decisions kept at most; the oldest-expiring go first when full.
const MAX_ENTRIES: usize = 65_536;
/// Checks asking the chain at once, per node; past this their answers are not cached.
const MAX_IN_FLIGHT: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GrantKey {
    pub chain_id: u64,
    pub standard: TokenStandard,
    pub contract: Address,
    pub viewer: Address,
    /// Token id (ERC-1155, or a specific ERC-721 token) and the minimum balance.
    pub token_id: Option<U256>,
    pub min_balance: u64,
}

impl GrantKey {
    fn party(&self) -> Party {
        (self.chain_id, self.contract, self.viewer)
    }
}

/// Whom a transfer touches: chain, token contract, account.
type Party = (u64, Address, Address);

#[derive(Debug, Default)]
pub struct GrantCache {
    entries: Mutex<HashMap<GrantKey, (bool, u64)>>,
    /// Parties with a check in flight: (version, checks).
    in_flight: Mutex<HashMap<Party, (u64, usize)>>,
}

/// A check in flight for one key: its answer may be cached only if no transfer touching
/// the party was seen since it began. Dropping it ends the check.
#[derive(Debug)]
pub struct Check<'a> {
    cache: &'a GrantCache,
    key: GrantKey,
    /// The party's version when the check began; `None` when it could not be registered.
    version: Option<u64>,
}

impl GrantCache {
    /// The cached decision, if still within its time-to-live at `now`.
    pub fn get(&self, key: &GrantKey, now: u64) -> Option<bool> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .map(|(allowed, _)| *allowed)
    }

    /// Registers a check of `key` before the chain is asked.
    pub fn begin(&self, key: GrantKey) -> Check<'_> {
        let version = self.in_flight.lock().ok().and_then(|mut in_flight| {
            if in_flight.len() >= MAX_IN_FLIGHT && !in_flight.contains_key(&key.party()) {
                return None;
            }
            let entry = in_flight.entry(key.party()).or_insert((0, 0));
            entry.1 += 1;
            Some(entry.0)
        });
        Check {
            cache: self,
            key,
            version,
        }
    }

    fn insert(&self, key: GrantKey, allowed: bool, expires: u64) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= MAX_ENTRIES {
            let now_oldest = entries.values().map(|(_, e)| *e).min().unwrap_or(0);
            entries.retain(|_, (_, e)| *e > now_oldest);
        }
        entries.insert(key, (allowed, expires));
    }

    /// Drops every decision about `viewer` for `contract` on `chain_id`, and voids the
    /// answers of checks of them in flight.
    pub fn forget(&self, chain_id: u64, contract: Address, viewer: Address) {
        if let Ok(mut in_flight) = self.in_flight.lock()
            && let Some((version, _)) = in_flight.get_mut(&(chain_id, contract, viewer))
        {
            *version += 1;
        }
        if let Ok(mut entries) = self.entries.lock() {
            let before = entries.len();
            entries.retain(|k, _| {
                !(k.chain_id == chain_id && k.contract == contract && k.viewer == viewer)
            });
            if entries.len() < before {
                tracing::info!(%viewer, %contract, "transfer seen on chain {chain_id}; cached access dropped");
            }
        }
    }
}

impl Check<'_> {
    /// Caches the chain's answer until `expires`, unless a transfer touching the party was
    /// seen since the check began. Returns whether it was cached.
    pub fn cache(self, allowed: bool, expires: u64) -> bool {
        let current = self
            .cache
            .in_flight
            .lock()
            .ok()
            .and_then(|in_flight| in_flight.get(&self.key.party()).map(|(v, _)| *v));
        let unchanged = self.version.is_some() && current == self.version;
        if unchanged {
            self.cache.insert(self.key.clone(), allowed, expires);
        }
        unchanged
    }
}

impl Drop for Check<'_> {
    fn drop(&mut self) {
        if self.version.is_none() {
            return;
        }
        if let Ok(mut in_flight) = self.cache.in_flight.lock() {
            let party = self.key.party();
            if let Some((_, checks)) = in_flight.get_mut(&party) {
                *checks -= 1;
                if *checks == 0 {
                    in_flight.remove(&party);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(viewer: u8) -> GrantKey {
        GrantKey {
            chain_id: 1,
            standard: TokenStandard::Erc721,
            contract: Address::repeat_byte(0xc0),
            viewer: Address::repeat_byte(viewer),
            token_id: None,
            min_balance: 1,
        }
    }

    #[test]
    fn a_transfer_during_a_check_keeps_its_answer_out_of_the_cache() {
        let cache = GrantCache::default();
        // The chain answered "yes"; the transfer lands before the answer is cached.
        let check = cache.begin(key(1));
        cache.forget(1, Address::repeat_byte(0xc0), Address::repeat_byte(1));
        assert!(!check.cache(true, u64::MAX));
        assert_eq!(cache.get(&key(1), 0), None);
        // A transfer touching someone else changes nothing; a quiet check is cached.
        let check = cache.begin(key(1));
        cache.forget(1, Address::repeat_byte(0xc0), Address::repeat_byte(2));
        assert!(check.cache(true, u64::MAX));
        assert_eq!(cache.get(&key(1), 0), Some(true));
        // Two checks in flight for one party: a transfer voids both.
        let (a, b) = (cache.begin(key(3)), cache.begin(key(3)));
        cache.forget(1, Address::repeat_byte(0xc0), Address::repeat_byte(3));
        assert!(!a.cache(true, u64::MAX));
        assert!(!b.cache(true, u64::MAX));
        assert!(
            cache.in_flight.lock().expect("lock").is_empty(),
            "ended checks unregister"
        );
        // The standard is part of the key.
        let erc1155 = GrantKey {
            standard: TokenStandard::Erc1155,
            ..key(1)
        };
        assert_eq!(cache.get(&erc1155, 0), None);
    }
}
