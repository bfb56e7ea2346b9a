//! One configured EVM chain: RPC calls with failover across its URLs, ownership and
//! registry reads through alloy, and the event follower that keeps the grant cache honest.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy::{
    eips::BlockId,
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::types::{Filter, TransactionRequest},
    sol_types::{SolCall, SolEvent},
};
use streamgate_contracts::{ContentRegistry, ERC1271_MAGIC, IERC721, IERC1155, IERC1271};

use super::cache::GrantCache;
use streamgate_swarm::daemon::unix_now;

/// One RPC attempt gives up after this long and the next URL is tried.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the follower asks for new blocks.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// The cache is trusted only while the follower has succeeded this recently: a follower
/// that cannot see transfers cannot vouch for cached grants.
const HEALTHY_FOR_SECS: i64 = 5;
/// Token contracts watched for transfers; more are checked live, uncached.
const MAX_WATCHED: usize = 4096;
/// Blocks asked for at once by the follower, so a long outage does not ask for everything.
const MAX_BLOCK_SPAN: u64 = 2000;

/// Blocks the follower reads again at every tick, so a transfer a reorganisation moves
/// into a block it already read is still seen.
const RESCAN_BLOCKS: u64 = 12;

/// Whether a contract call's failure is the contract's own answer (it reverted, or returned
/// nothing: not a token of that standard, no such token), as opposed to the RPC failing.
/// Only an answer may become a "no"; anything else is an error, and a 503.
fn is_contract_answer(error: &alloy::contract::Error) -> bool {
    use alloy::contract::Error;
    match error {
        Error::TransportError(e) => is_revert(e),
        Error::ZeroData(..) | Error::AbiError(_) => true,
        _ => false,
    }
}

/// Whether an RPC error is the EVM's revert rather than the endpoint failing.
fn is_revert(error: &alloy::transports::TransportError) -> bool {
    error.as_error_resp().is_some_and(|payload| {
        // EIP-1474 code 3 is "execution reverted"; some nodes use -32000 with that text.
        payload.code == 3 || payload.message.to_ascii_lowercase().contains("revert")
    })
}

/// An ERC-1271 answer that accepts: the 4-byte magic value left-aligned in exactly one
/// zero-padded 32-byte word.
fn is_erc1271_magic(answer: &[u8]) -> bool {
    answer.len() == 32 && answer[..4] == ERC1271_MAGIC && answer[4..].iter().all(|b| *b == 0)
}

/// A balance, or zero when the contract answered with a revert.
fn zero_on_revert(result: Result<U256, alloy::contract::Error>) -> Result<U256, String> {
    match result {
        Ok(balance) => Ok(balance),
        Err(e) if is_contract_answer(&e) => Ok(U256::ZERO),
        Err(e) => Err(e.to_string()),
    }
}

/// Why a chain call failed: every configured URL failed, timed out, or answered with an
/// error. The message names no URL (they often carry API keys); the failures are logged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("chain {chain_id}: no RPC endpoint answered")]
pub struct ChainUnavailable {
    pub chain_id: u64,
}

/// What the registry says of a manifest, in one creator's entry.
#[derive(Debug, Clone)]
pub struct RegistryEntry {
    pub retired: bool,
    pub policy: ContentRegistry::Policy,
}

#[derive(Debug)]
pub struct Chain {
    pub chain_id: u64,
    pub registry: Option<Address>,
    providers: Vec<(String, DynProvider)>,
    /// Unix time until which cached grants for this chain may be used.
    healthy_until: AtomicI64,
    /// The last block the follower has read transfers up to (0: not yet).
    head: AtomicU64,
    watched: Mutex<HashSet<Address>>,
}

impl Chain {
    pub fn new(chain_id: u64, urls: &[String], registry: Option<Address>) -> Result<Self, String> {
        let mut providers = Vec::new();
        for url in urls {
            let parsed = url
                .parse()
                .map_err(|e| format!("chains.rpc_urls: {url:?} is not a URL: {e}"))?;
            let provider = ProviderBuilder::new().connect_http(parsed).erased();
            providers.push((url.clone(), provider));
        }
        if providers.is_empty() {
            return Err(format!("chain {chain_id} has no rpc_urls"));
        }
        Ok(Self {
            chain_id,
            registry,
            providers,
            healthy_until: AtomicI64::new(0),
            head: AtomicU64::new(0),
            watched: Mutex::new(HashSet::new()),
        })
    }

    /// Runs `call` against each RPC URL in turn until one answers.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, ChainUnavailable>
    where
        F: Fn(DynProvider) -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        for (url, provider) in &self.providers {
            match tokio::time::timeout(CALL_TIMEOUT, call(provider.clone())).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => tracing::debug!(chain = self.chain_id, "{url}: {e}"),
                Err(_) => tracing::debug!(chain = self.chain_id, "{url}: timed out"),
            }
        }
        tracing::warn!(chain = self.chain_id, "no RPC endpoint answered");
        Err(ChainUnavailable {
            chain_id: self.chain_id,
        })
    }

    /// The block ownership is read at on provider `p`: its latest, which must be at or
    /// after the follower's head, so that any transfer after it is one the follower will
    /// still see (and void a check in flight for). An endpoint behind the follower is
    /// lagging, and not asked.
    async fn read_block(&self, p: &DynProvider) -> Result<BlockId, String> {
        let latest = p.get_block_number().await.map_err(|e| e.to_string())?;
        let head = self.head.load(Ordering::Acquire);
        if latest < head {
            return Err(format!(
                "endpoint is at block {latest}, behind the follower's {head}"
            ));
        }
        Ok(BlockId::number(latest))
    }

    pub fn cache_trusted(&self) -> bool {
        self.healthy_until.load(Ordering::Relaxed) >= unix_now() as i64
    }

    /// Asks the follower to watch `contract` for transfers; false when the watch list is
    /// full (answers about that contract must then not be cached).
    pub fn watch(&self, contract: Address) -> bool {
        let Ok(mut watched) = self.watched.lock() else {
            return false;
        };
        if watched.contains(&contract) {
            return true;
        }
        watched.len() < MAX_WATCHED && watched.insert(contract)
    }

    pub async fn erc721_balance(
        &self,
        contract: Address,
        owner: Address,
    ) -> Result<U256, ChainUnavailable> {
        self.call(|p| async move {
            let block = self.read_block(&p).await?;
            zero_on_revert(
                IERC721::new(contract, p)
                    .balanceOf(owner)
                    .block(block)
                    .call()
                    .await,
            )
        })
        .await
    }

    /// The owner of an ERC-721 token; a token that does not exist has no owner.
    pub async fn erc721_owner(
        &self,
        contract: Address,
        token: U256,
    ) -> Result<Option<Address>, ChainUnavailable> {
        self.call(|p| async move {
            let block = self.read_block(&p).await?;
            match IERC721::new(contract, p)
                .ownerOf(token)
                .block(block)
                .call()
                .await
            {
                Ok(owner) => Ok(Some(owner)),
                // A revert is an answer (no such token); an RPC failure is not.
                Err(e) if is_contract_answer(&e) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    pub async fn erc1155_balance(
        &self,
        contract: Address,
        owner: Address,
        id: U256,
    ) -> Result<U256, ChainUnavailable> {
        self.call(|p| async move {
            let block = self.read_block(&p).await?;
            zero_on_revert(
                IERC1155::new(contract, p)
                    .balanceOf(owner, id)
                    .block(block)
                    .call()
                    .await,
            )
        })
        .await
    }

    /// `creator`'s registry entry for `manifest_id`, when a registry is configured and the
    /// entry exists.
    pub async fn registry_entry(
        &self,
        manifest_id: B256,
        creator: Address,
    ) -> Result<Option<RegistryEntry>, ChainUnavailable> {
        let Some(registry) = self.registry else {
            return Ok(None);
        };
        self.call(|p| async move {
            let entry = ContentRegistry::new(registry, p)
                .get(manifest_id, creator)
                .call()
                .await
                .map_err(|e| e.to_string())?;
            Ok(entry.registered.then_some(RegistryEntry {
                retired: entry.retired,
                policy: entry.policy,
            }))
        })
        .await
    }

    /// ERC-1271: whether `account` (a contract) accepts `signature` over `hash`. Accounts
    /// without code are not contract wallets.
    pub async fn contract_accepts(
        &self,
        account: Address,
        hash: B256,
        signature: Bytes,
    ) -> Result<bool, ChainUnavailable> {
        self.call(|p| {
            let signature = signature.clone();
            async move {
                let code = p.get_code_at(account).await.map_err(|e| e.to_string())?;
                if code.is_empty() {
                    return Ok(false);
                }
                // The raw answer, checked strictly: exactly one 32-byte word holding the
                // magic value, nothing else (a lenient decoder would accept a longer return
                // or stray bits in the padding).
                let input = IERC1271::isValidSignatureCall { hash, signature }.abi_encode();
                let request = TransactionRequest::default()
                    .to(account)
                    .input(Bytes::from(input).into());
                match p.call(request).await {
                    Ok(answer) => Ok(is_erc1271_magic(&answer)),
                    Err(e) if is_revert(&e) => Ok(false),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await
    }

    /// Follows new blocks and drops cached grants touched by token transfers. Runs until the
    /// task is aborted.
    pub async fn follow(self: Arc<Self>, cache: Arc<GrantCache>) {
        let mut last: Option<u64> = None;
        let mut tick = tokio::time::interval(FOLLOW_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.follow_once(&cache, last).await {
                Ok((head, caught_up)) => {
                    last = Some(head);
                    self.head.store(head, Ordering::Release);
                    // Catching up after an outage is not vouching for the cache yet.
                    if caught_up {
                        self.healthy_until
                            .store(unix_now() as i64 + HEALTHY_FOR_SECS, Ordering::Relaxed);
                    }
                }
                Err(e) => tracing::debug!(chain = self.chain_id, "event follower: {e}"),
            }
        }
    }

    /// One tick: reads the transfers of the blocks after `last` (and the last few again),
    /// up to the chain's head or a span's worth. Returns the block read up to and whether
    /// that is the head.
    async fn follow_once(
        &self,
        cache: &GrantCache,
        last: Option<u64>,
    ) -> Result<(u64, bool), ChainUnavailable> {
        let latest = self
            .call(|p| async move { p.get_block_number().await.map_err(|e| e.to_string()) })
            .await?;
        let Some(last) = last else {
            return Ok((latest, true));
        };
        let watched: Vec<Address> = self
            .watched
            .lock()
            .map(|w| w.iter().copied().collect())
            .unwrap_or_default();
        if watched.is_empty() || latest == 0 {
            return Ok((latest.max(last), true));
        }
        let from = last.min(latest).saturating_sub(RESCAN_BLOCKS) + 1;
        let to = latest.min(last + MAX_BLOCK_SPAN);
        let filter = Filter::new()
            .address(watched)
            .event_signature(vec![
                IERC721::Transfer::SIGNATURE_HASH,
                IERC1155::TransferSingle::SIGNATURE_HASH,
                IERC1155::TransferBatch::SIGNATURE_HASH,
            ])
            .from_block(from.min(to))
            .to_block(to);
        let logs = self
            .call(|p| {
                let filter = filter.clone();
                async move { p.get_logs(&filter).await.map_err(|e| e.to_string()) }
            })
            .await?;
        for log in logs {
            let topics = log.topics();
            // Transfer(from, to, id): topics 1 and 2. TransferSingle/Batch(operator, from, to): 2 and 3.
            let parties: &[B256] = match topics.first() {
                Some(t) if *t == IERC721::Transfer::SIGNATURE_HASH => {
                    topics.get(1..3).unwrap_or_default()
                }
                Some(_) => topics.get(2..4).unwrap_or_default(),
                None => &[],
            };
            for party in parties {
                let account = Address::from_word(*party);
                cache.forget(self.chain_id, log.address(), account);
            }
        }
        Ok((to, to == latest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_erc1271_word_accepts() {
        let mut word = [0u8; 32];
        word[..4].copy_from_slice(&ERC1271_MAGIC);
        assert!(is_erc1271_magic(&word));
        assert!(!is_erc1271_magic(&word[..4]), "bare 4 bytes");
        assert!(
            !is_erc1271_magic(&[word.as_slice(), &[0u8; 32]].concat()),
            "two words"
        );
        let mut dirty = word;
        dirty[31] = 1;
        assert!(!is_erc1271_magic(&dirty), "stray bits in the padding");
        let mut right_aligned = [0u8; 32];
        right_aligned[28..].copy_from_slice(&ERC1271_MAGIC);
        assert!(!is_erc1271_magic(&right_aligned));
        assert!(!is_erc1271_magic(&[]));
    }
}
