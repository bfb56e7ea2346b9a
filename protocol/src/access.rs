//! Access policies (who may watch a gated video) and how gated segments are encrypted.

use std::str::FromStr;

use alloy_primitives::{Address, U256};
use serde::{Deserialize, Serialize};

/// Token standard of the gating contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenStandard {
    Erc721,
    Erc1155,
}

/// Who may watch: holders of a token on an EVM chain.
///
/// ERC-721: `ownerOf(token_id) == viewer` when a token id is given, else
/// `balanceOf(viewer) >= min_balance`. ERC-1155: `balanceOf(viewer, token_id) >= min_balance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessPolicy {
    pub chain_id: u64,
    pub standard: TokenStandard,
    pub contract: Address,
    pub token_id: Option<U256>,
    pub min_balance: u64,
    /// The Ethereum account allowed to register this video in the chain's ContentRegistry.
    /// Registry entries by anyone else are ignored (anyone can register any id first).
    #[serde(default)]
    pub registrant: Option<Address>,
}

/// Why a `--gate` string is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "gate {0:?} is not erc721:CHAIN_ID:0xCONTRACT[:TOKEN_ID] or erc1155:CHAIN_ID:0xCONTRACT:TOKEN_ID[:MIN_BALANCE]: {1}"
)]
pub struct GateError(pub String, pub &'static str);

impl FromStr for AccessPolicy {
    type Err = GateError;

    fn from_str(text: &str) -> Result<Self, GateError> {
        let err = |why| GateError(text.to_string(), why);
        let parts: Vec<&str> = text.split(':').collect();
        let standard = match parts.first().map(|s| s.to_ascii_lowercase()).as_deref() {
            Some("erc721") => TokenStandard::Erc721,
            Some("erc1155") => TokenStandard::Erc1155,
            _ => return Err(err("the standard must be erc721 or erc1155")),
        };
        let chain_id: u64 = parts
            .get(1)
            .and_then(|c| c.parse().ok())
            .filter(|c| *c > 0)
            .ok_or_else(|| err("the chain id must be a positive number"))?;
        let contract: Address = parts
            .get(2)
            .and_then(|c| c.parse().ok())
            .filter(|c: &Address| !c.is_zero())
            .ok_or_else(|| err("the contract must be a 0x address"))?;
        let number = |i: usize| -> Result<Option<U256>, GateError> {
            parts
                .get(i)
                .map(|t| {
                    U256::from_str_radix(t, 10)
                        .map_err(|_| err("token ids and balances are decimal numbers"))
                })
                .transpose()
        };
        let (token_id, min_balance) = match standard {
            TokenStandard::Erc721 => {
                if parts.len() > 4 {
                    return Err(err("too many fields for erc721"));
                }
                (number(3)?, 1)
            }
            TokenStandard::Erc1155 => {
                if parts.len() > 5 {
                    return Err(err("too many fields for erc1155"));
                }
                let id = number(3)?.ok_or_else(|| err("erc1155 needs a token id"))?;
                let min = number(4)?.unwrap_or(U256::from(1));
                let min: u64 = min
                    .try_into()
                    .map_err(|_| err("the minimum balance is too large"))?;
                if min == 0 {
                    return Err(err("the minimum balance must be at least 1"));
                }
                (Some(id), min)
            }
        };
        Ok(Self {
            chain_id,
            standard,
            contract,
            token_id,
            min_balance,
            registrant: None,
        })
    }
}

/// How a gated video's media segments are encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    pub method: EncryptionMethod,
    /// The content key, sealed to each node that may release it.
    pub key_wraps: Vec<WrappedKey>,
}

/// HLS `METHOD=AES-128`: each media segment encrypted whole with AES-128-CBC and PKCS#7
/// padding, the IV being [`Encryption::iv`] of its track and index (written into every
/// `EXT-X-KEY`), so no two segments of a video share one. Init segments stay clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncryptionMethod {
    #[serde(rename = "AES-128")]
    Aes128,
}

/// The content key sealed (X25519 sealed box) to one key server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The key server's Ed25519 node key; its X25519 key is derived from it.
    #[serde(with = "crate::content::hex_key")]
    pub node_key: [u8; 32],
    /// Where players reach the key server (`scheme://host:port`), for playlists served by
    /// nodes that hold no key.
    pub url: Option<String>,
    pub sealed: Vec<u8>,
}

pub const MAX_KEY_WRAPS: usize = 16;
const MAX_SEALED_BYTES: usize = 256;
const MAX_URL_BYTES: usize = 256;

impl AccessPolicy {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.chain_id == 0 || self.contract.is_zero() {
            return Err("access policy needs a chain id and a contract".into());
        }
        match self.standard {
            TokenStandard::Erc1155 if self.token_id.is_none() => {
                Err("ERC-1155 policies need a token id".into())
            }
            _ if self.min_balance == 0 => Err("the minimum balance must be at least 1".into()),
            _ => Ok(()),
        }
    }
}

/// A key server's URL as manifests carry it: a plain `http(s)://host[:port]` origin,
/// nothing that could inject into a playlist.
pub fn check_key_server_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let ok = url.len() <= MAX_URL_BYTES
        && rest.is_some_and(|host| {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "key server URL {url:?} is not a plain http(s)://host[:port] origin"
        ))
    }
}

impl Encryption {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.key_wraps.is_empty() || self.key_wraps.len() > MAX_KEY_WRAPS {
            return Err(format!(
                "between 1 and {MAX_KEY_WRAPS} wrapped keys are allowed"
            ));
        }
        for wrap in &self.key_wraps {
            if wrap.sealed.is_empty() || wrap.sealed.len() > MAX_SEALED_BYTES {
                return Err("a wrapped key has an impossible size".into());
            }
            if let Some(url) = &wrap.url {
                check_key_server_url(url)?;
            }
        }
        Ok(())
    }

    /// The IV of media segment `index` of the manifest's track number `track`: the track
    /// number in the high 64 bits and the index in the low 64, big-endian. Unique per
    /// (track, segment) within a video, and every video has its own key.
    pub fn iv(track: usize, index: usize) -> [u8; 16] {
        ((u128::from(track as u64) << 64) | u128::from(index as u64)).to_be_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_parse_and_bad_ones_say_why() {
        let p: AccessPolicy = "erc721:31337:0x5FbDB2315678afecb367f032d93F642f64180aa3"
            .parse()
            .expect("valid");
        assert_eq!(
            (p.standard, p.chain_id, p.token_id, p.min_balance),
            (TokenStandard::Erc721, 31337, None, 1)
        );
        let p: AccessPolicy = "erc1155:5:0x5FbDB2315678afecb367f032d93F642f64180aa3:7:3"
            .parse()
            .expect("valid");
        assert_eq!((p.token_id, p.min_balance), (Some(U256::from(7)), 3));
        for bad in [
            "erc20:1:0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "erc721:0:0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "erc721:1:nope",
            "erc1155:1:0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "erc1155:1:0x5FbDB2315678afecb367f032d93F642f64180aa3:1:0",
            "erc721:1:0x0000000000000000000000000000000000000000",
        ] {
            assert!(bad.parse::<AccessPolicy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ivs_are_unique_per_track_and_segment() {
        assert_eq!(Encryption::iv(0, 1)[15], 1);
        assert_eq!(Encryption::iv(0, 256)[14], 1);
        assert_eq!(Encryption::iv(1, 0)[7], 1);
        let mut seen = std::collections::HashSet::new();
        for track in 0..16 {
            for index in 0..1000 {
                assert!(seen.insert(Encryption::iv(track, index)));
            }
        }
    }
}
