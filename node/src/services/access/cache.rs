//! Cached ownership decisions, keyed by chain, token contract, viewer and the rest of the
//! policy, with a time-to-live, and dropped early by the event follower on any transfer
//! that touches the viewer.

use std::{collections::HashMap, sync::Mutex};

use alloy::primitives::{Address, U256};

/// Decisions kept at most; the oldest-expiring go first when full.
const MAX_ENTRIES: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GrantKey {
    pub chain_id: u64,
    pub contract: Address,
    pub viewer: Address,
    /// Token id (ERC-1155, or a specific ERC-721 token) and the minimum balance.
    pub token_id: Option<U256>,
    pub min_balance: u64,
}

#[derive(Debug, Default)]
pub struct GrantCache {
    entries: Mutex<HashMap<GrantKey, (bool, u64)>>,
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

    pub fn insert(&self, key: GrantKey, allowed: bool, expires: u64) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= MAX_ENTRIES {
            let now_oldest = entries.values().map(|(_, e)| *e).min().unwrap_or(0);
            entries.retain(|_, (_, e)| *e > now_oldest);
        }
        entries.insert(key, (allowed, expires));
    }

    /// Drops every decision about `viewer` for `contract` on `chain_id`.
    pub fn forget(&self, chain_id: u64, contract: Address, viewer: Address) {
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
