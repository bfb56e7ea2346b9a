//! Gated viewing: wallet sign-in (EIP-4361), on-chain ownership checks, and key release.
//!
//! ```text
//!  GET /api/v1/auth/nonce ─▶ nonce (single use, 10 min)
//!  POST /api/v1/auth/siwe {message, signature}
//!     ─▶ parse + check domain/URI/version/chain/time (protocol::siwe)
//!     ─▶ nonce issued here and unused ─▶ EIP-191 recover == address, else ERC-1271 eth_call
//!     ─▶ session (cookie + bearer token) bound to the address
//!  GET /keys/{id} with the session
//!     ─▶ policy: ContentRegistry on the chain if registered there (the chain wins), else the
//!        manifest's ─▶ ownership: cache (only while the chain's event follower is healthy)
//!        or balanceOf/ownerOf through alloy ─▶ unseal this node's wrap of the content key
//! ```
//!
//! Fail closed: no RPC endpoint answering means 503, never a key.

mod cache;
pub mod chain;
pub mod expiring;
pub mod keys;

use std::{collections::HashMap, sync::Arc};

use alloy::primitives::{Address, B256, Bytes, Signature, U256, eip191_hash_message};
use streamgate_protocol::{
    access::{AccessPolicy, TokenStandard},
    siwe::{Expectations, SiweError, SiweMessage},
};

use streamgate_protocol::{ContentHash, SignedManifest};
use streamgate_swarm::{daemon::unix_now, identity::Identity};

use crate::config::Config;
use cache::{GrantCache, GrantKey};
use chain::{Chain, ChainUnavailable};
use expiring::ExpiringMap;

/// Nonces handed out and not used yet; sessions alive. Both bounded, and a full map refuses
/// new entries rather than evict live ones (see [`expiring`]).
const MAX_NONCES: usize = 65_536;
const MAX_SESSIONS: usize = 65_536;
const NONCE_TTL_SECS: u64 = 600;
/// Largest sign-in message and signature (hex) looked at; longer ones are refused before
/// any parsing or RPC call. ERC-1271 signatures of multisig wallets run to a few hundred
/// bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;
pub const MAX_SIGNATURE_HEX_BYTES: usize = 4096;

/// A signed-in viewer.
#[derive(Debug, Clone)]
pub struct Session {
    pub address: Address,
    pub expires_at: u64,
    pub proof: Proof,
}

/// How a session's address was proven.
#[derive(Debug, Clone)]
pub enum Proof {
    /// A signature by the address's own key: valid on every chain.
    Key,
    /// A contract wallet's ERC-1271 approval, on `chain_id` only: the same address may be
    /// another contract, or nobody's, on another chain, so a policy there asks that chain
    /// again with the same message hash and signature.
    Contract {
        chain_id: u64,
        hash: B256,
        signature: Bytes,
    },
}

/// Why sign-in failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignInError {
    #[error(transparent)]
    Message(#[from] SiweError),
    #[error(
        "the nonce was not issued by this node, or has expired; ask GET /api/v1/auth/nonce for a new one"
    )]
    UnknownNonce,
    #[error("the nonce was already used; ask GET /api/v1/auth/nonce for a new one")]
    NonceReused,
    #[error("the signature is malformed or recovers to no address")]
    BadSignature,
    #[error("the signature was made by {signer}, not by {claimed}")]
    WrongSigner { signer: Address, claimed: Address },
    #[error("the contract account {0} does not accept this signature (ERC-1271)")]
    ContractRejected(Address),
    #[error(transparent)]
    Chain(#[from] ChainUnavailable),
    #[error(
        "the message is longer than {MAX_MESSAGE_BYTES} bytes or the signature than {MAX_SIGNATURE_HEX_BYTES} hex digits"
    )]
    TooLarge,
    #[error("this node holds as many sessions as it can; try again later")]
    Busy,
}

/// As many sign-ins are pending as the node keeps; try again later.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("as many sign-ins are pending as this node keeps; try again in a minute")]
pub struct Busy;

impl SignInError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Message(e) => e.code(),
            Self::UnknownNonce => "unknown_nonce",
            Self::NonceReused => "nonce_reused",
            Self::BadSignature => "bad_signature",
            Self::WrongSigner { .. } => "wrong_signer",
            Self::ContractRejected(_) => "contract_rejected",
            Self::Chain(_) => "chain_unavailable",
            Self::TooLarge => "too_large",
            Self::Busy => "busy",
        }
    }
}

/// Why a key was not released.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    #[error("{viewer} does not hold what this video requires ({requirement})")]
    NotEntitled {
        viewer: Address,
        requirement: String,
    },
    #[error("this video was retired by its creator in the content registry")]
    Retired,
    #[error(
        "contract wallet {wallet} signed in on chain {proven}; on chain {chain_id}, where this video is gated, it does not accept that sign-in"
    )]
    WalletNotOnChain {
        wallet: Address,
        proven: u64,
        chain_id: u64,
    },
    #[error(
        "this node does not check ownership on chain {0}; add it under [[chains]] in config.toml"
    )]
    UnknownChain(u64),
    #[error(transparent)]
    Chain(#[from] ChainUnavailable),
}

/// Why a content key was not released.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("this video is public and has no key")]
    NotGated,
    #[error(transparent)]
    Denied(#[from] AccessError),
    #[error("this node holds no key for this video; its key servers are {elsewhere:?}")]
    NoKeyHere { elsewhere: Vec<String> },
    #[error("{0}")]
    Unusable(#[from] keys::WrapError),
}

/// Everything gating needs: sessions, chains, cached ownership, and the node key that
/// opens the content keys sealed to it.
#[derive(Debug)]
pub struct Access {
    identity: Identity,
    /// The node's public origin (`scheme://host[:port]`) and its `host[:port]`.
    pub origin: String,
    pub domain: String,
    chains: HashMap<u64, Arc<Chain>>,
    nonces: std::sync::Mutex<ExpiringMap<String, ()>>,
    used_nonces: std::sync::Mutex<ExpiringMap<String, ()>>,
    sessions: std::sync::Mutex<ExpiringMap<String, Session>>,
    cache: Arc<GrantCache>,
    session_ttl: u64,
    cache_ttl: u64,
    /// `testing.ownership_check_delay_ms`: a pause between the chain's granting answer and
    /// caching it, so a test can land a transfer exactly there.
    check_delay: std::time::Duration,
    followers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Access {
    fn drop(&mut self) {
        for follower in &self.followers {
            follower.abort();
        }
    }
}

impl Access {
    /// Sets up the configured chains and starts their event followers. `api_url` is the
    /// origin used when `access.public_origin` is empty.
    pub fn new(config: &Config, api_url: &str, identity: Identity) -> Result<Self, String> {
        let origin = if config.access.public_origin.is_empty() {
            api_url.trim_end_matches('/').to_string()
        } else {
            config
                .access
                .public_origin
                .trim_end_matches('/')
                .to_string()
        };
        let domain = origin
            .split_once("://")
            .map(|(_, rest)| rest.to_string())
            .ok_or_else(|| {
                format!("access.public_origin {origin:?} must look like http://host:port")
            })?;
        let cache = Arc::new(GrantCache::default());
        let mut chains = HashMap::new();
        let mut followers = Vec::new();
        for chain in &config.chains {
            let registry = match &chain.registry {
                Some(text) => Some(
                    text.parse::<Address>()
                        .map_err(|_| format!("chains.registry {text:?} is not an address"))?,
                ),
                None => None,
            };
            let client = Arc::new(Chain::new(chain.chain_id, &chain.rpc_urls, registry)?);
            followers.push(tokio::spawn(client.clone().follow(cache.clone())));
            chains.insert(chain.chain_id, client);
        }
        Ok(Self {
            identity,
            origin,
            domain,
            chains,
            nonces: std::sync::Mutex::new(ExpiringMap::new(MAX_NONCES)),
            used_nonces: std::sync::Mutex::new(ExpiringMap::new(MAX_NONCES)),
            sessions: std::sync::Mutex::new(ExpiringMap::new(MAX_SESSIONS)),
            cache,
            session_ttl: config.access.session_ttl_secs,
            cache_ttl: config.access.cache_ttl_secs,
            check_delay: std::time::Duration::from_millis(
                config.testing.ownership_check_delay_ms.unwrap_or(0),
            ),
            followers,
        })
    }

    pub fn chain_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.chains.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// A fresh single-use nonce, unless as many sign-ins as the node keeps are pending.
    pub fn new_nonce(&self) -> Result<String, Busy> {
        let mut raw = [0u8; 12];
        rand::fill(&mut raw);
        let nonce = hex::encode(raw);
        let now = unix_now();
        self.nonces
            .lock()
            .map_err(|_| Busy)?
            .insert(nonce.clone(), (), now + NONCE_TTL_SECS, now)
            .map_err(|_| Busy)?;
        Ok(nonce)
    }

    /// Verifies a signed EIP-4361 message; on success the nonce is spent and a session opened.
    pub async fn sign_in(
        &self,
        text: &str,
        signature_hex: &str,
    ) -> Result<(String, Session), SignInError> {
        if text.len() > MAX_MESSAGE_BYTES || signature_hex.len() > MAX_SIGNATURE_HEX_BYTES {
            return Err(SignInError::TooLarge);
        }
        let message = SiweMessage::parse(text)?;
        let chain_ids = self.chain_ids();
        let now = unix_now();
        message.check(
            &Expectations {
                domain: &self.domain,
                origin: &self.origin,
                chain_ids: &chain_ids,
            },
            now as i64,
        )?;
        self.take_nonce(&message.nonce, now)?;
        let hash = eip191_hash_message(text.as_bytes());
        let raw = hex::decode(signature_hex.trim_start_matches("0x"))
            .map_err(|_| SignInError::BadSignature)?;
        let recovered = Signature::try_from(raw.as_slice())
            .ok()
            .and_then(|sig| sig.recover_address_from_prehash(&hash).ok());
        let mut proof = Proof::Key;
        if recovered != Some(message.address) {
            let chain = self
                .chains
                .get(&message.chain_id)
                .ok_or(SignInError::Message(SiweError::WrongChain(
                    message.chain_id,
                )))?;
            let accepted = chain
                .contract_accepts(message.address, hash, Bytes::from(raw.clone()))
                .await?;
            if !accepted {
                return Err(match recovered {
                    Some(signer) => SignInError::WrongSigner {
                        signer,
                        claimed: message.address,
                    },
                    None if raw.len() == 65 => SignInError::BadSignature,
                    None => SignInError::ContractRejected(message.address),
                });
            }
            proof = Proof::Contract {
                chain_id: message.chain_id,
                hash,
                signature: Bytes::from(raw),
            };
        }
        let expires_at = match message.expiration_time {
            Some(t) => (t.max(0) as u64).min(now + self.session_ttl),
            None => now + self.session_ttl,
        };
        let mut raw_token = [0u8; 32];
        rand::fill(&mut raw_token);
        let token = hex::encode(raw_token);
        let session = Session {
            address: message.address,
            expires_at,
            proof,
        };
        self.sessions
            .lock()
            .map_err(|_| SignInError::Busy)?
            .insert(token.clone(), session.clone(), expires_at, now)
            .map_err(|_| SignInError::Busy)?;
        tracing::info!(address = %message.address, "signed in");
        Ok((token, session))
    }

    fn take_nonce(&self, nonce: &str, now: u64) -> Result<(), SignInError> {
        let issued = self
            .nonces
            .lock()
            .ok()
            .and_then(|mut n| n.remove(&nonce.to_string()));
        match issued {
            Some(((), expires)) if expires > now => {
                if let Ok(mut used) = self.used_nonces.lock() {
                    // Full of spent nonces: a replay then reads as unknown, still refused.
                    let _ = used.insert(nonce.to_string(), (), expires, now);
                }
                Ok(())
            }
            Some(_) => Err(SignInError::UnknownNonce),
            None => {
                let reused = self
                    .used_nonces
                    .lock()
                    .map(|u| u.get(&nonce.to_string(), now).is_some())
                    .unwrap_or(false);
                Err(if reused {
                    SignInError::NonceReused
                } else {
                    SignInError::UnknownNonce
                })
            }
        }
    }

    /// The live session behind `token`.
    pub fn session(&self, token: &str) -> Option<Session> {
        let sessions = self.sessions.lock().ok()?;
        sessions.get(&token.to_string(), unix_now()).cloned()
    }

    /// Whether `viewer` may watch manifest `manifest_id` gated by `policy`.
    pub async fn check(
        &self,
        manifest_id: [u8; 32],
        policy: &AccessPolicy,
        viewer: Address,
    ) -> Result<(), AccessError> {
        let chain = self
            .chains
            .get(&policy.chain_id)
            .ok_or(AccessError::UnknownChain(policy.chain_id))?;
        // The registry, when configured and holding an entry by the account the manifest names
        // as its registrant, overrides the manifest. Entries are per creator on chain, so
        // nobody else's entry can stand in for it.
        let registered = match policy.registrant {
            Some(registrant) => {
                chain
                    .registry_entry(B256::from(manifest_id), registrant)
                    .await?
            }
            None => None,
        };
        let effective = match registered {
            Some(entry) if entry.retired => return Err(AccessError::Retired),
            Some(entry) => match from_registry(policy.chain_id, &entry.policy) {
                Some(p) => p,
                // Registered as public.
                None => return Ok(()),
            },
            None => policy.clone(),
        };
        let key = GrantKey {
            chain_id: effective.chain_id,
            standard: effective.standard,
            contract: effective.contract,
            viewer,
            token_id: effective.token_id,
            min_balance: effective.min_balance,
        };
        let cached = if chain.cache_trusted() {
            self.cache.get(&key, unix_now())
        } else {
            None
        };
        let allowed = match cached {
            Some(allowed) => allowed,
            None => {
                // Watched and registered before the chain is asked: a transfer from here on
                // either shows in the answer or voids it before it is cached.
                let watched = chain.watch(effective.contract);
                let check = self.cache.begin(key);
                let allowed = match (effective.standard, effective.token_id) {
                    (TokenStandard::Erc721, Some(token)) => {
                        chain.erc721_owner(effective.contract, token).await? == Some(viewer)
                    }
                    (TokenStandard::Erc721, None) => {
                        chain.erc721_balance(effective.contract, viewer).await?
                            >= U256::from(effective.min_balance)
                    }
                    (TokenStandard::Erc1155, token) => {
                        chain
                            .erc1155_balance(effective.contract, viewer, token.unwrap_or_default())
                            .await?
                            >= U256::from(effective.min_balance)
                    }
                };
                if allowed && !self.check_delay.is_zero() {
                    tokio::time::sleep(self.check_delay).await;
                }
                if watched {
                    check.cache(allowed, unix_now() + self.cache_ttl);
                }
                allowed
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(AccessError::NotEntitled {
                viewer,
                requirement: describe(&effective),
            })
        }
    }
}

impl Access {
    /// Whether `session`'s address is proven on `chain_id`: always for a key's signature; a
    /// contract wallet's approval is asked of that chain again unless given there.
    async fn proven_on(&self, session: &Session, chain_id: u64) -> Result<(), AccessError> {
        let Proof::Contract {
            chain_id: proven,
            hash,
            signature,
        } = &session.proof
        else {
            return Ok(());
        };
        if *proven == chain_id {
            return Ok(());
        }
        let chain = self
            .chains
            .get(&chain_id)
            .ok_or(AccessError::UnknownChain(chain_id))?;
        if chain
            .contract_accepts(session.address, *hash, signature.clone())
            .await?
        {
            Ok(())
        } else {
            Err(AccessError::WalletNotOnChain {
                wallet: session.address,
                proven: *proven,
                chain_id,
            })
        }
    }

    /// The content key of gated manifest `id`, for `session`'s viewer if the policy allows it.
    pub async fn release_key(
        &self,
        id: ContentHash,
        signed: &SignedManifest,
        session: &Session,
    ) -> Result<keys::ContentKey, KeyError> {
        let viewer = session.address;
        let manifest = &signed.manifest;
        let (Some(policy), Some(encryption)) = (&manifest.access, &manifest.encryption) else {
            return Err(KeyError::NotGated);
        };
        // The wrap is opened, and its binding to this manifest checked, before the policy:
        // a manifest carrying copied wraps learns nothing, not even whether the viewer passes.
        let key = match keys::open(manifest, &self.identity.signing_key()) {
            Some(Ok(key)) => key,
            Some(Err(e)) => return Err(KeyError::Unusable(e)),
            None => {
                return Err(KeyError::NoKeyHere {
                    elsewhere: encryption
                        .key_wraps
                        .iter()
                        .filter_map(|w| w.url.clone())
                        .collect(),
                });
            }
        };
        self.proven_on(session, policy.chain_id).await?;
        self.check(*id.as_bytes(), policy, viewer).await?;
        tracing::info!(manifest = %id, %viewer, "content key released");
        Ok(key)
    }
}

fn from_registry(
    chain_id: u64,
    policy: &streamgate_contracts::ContentRegistry::Policy,
) -> Option<AccessPolicy> {
    let standard = match policy.standard {
        1 => TokenStandard::Erc721,
        2 => TokenStandard::Erc1155,
        _ => return None,
    };
    Some(AccessPolicy {
        chain_id,
        standard,
        contract: policy.token,
        token_id: (policy.specificToken || standard == TokenStandard::Erc1155)
            .then_some(policy.tokenId),
        min_balance: u64::try_from(policy.minBalance).unwrap_or(u64::MAX).max(1),
        registrant: None,
    })
}

fn describe(policy: &AccessPolicy) -> String {
    match (policy.standard, policy.token_id) {
        (TokenStandard::Erc721, Some(id)) => format!(
            "token {id} of ERC-721 {} on chain {}",
            policy.contract, policy.chain_id
        ),
        (TokenStandard::Erc721, None) => format!(
            "at least {} token(s) of ERC-721 {} on chain {}",
            policy.min_balance, policy.contract, policy.chain_id
        ),
        (TokenStandard::Erc1155, id) => format!(
            "at least {} of token {} of ERC-1155 {} on chain {}",
            policy.min_balance,
            id.unwrap_or_default(),
            policy.contract,
            policy.chain_id
        ),
    }
}
