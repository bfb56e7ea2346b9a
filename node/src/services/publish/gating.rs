//! Gated publishing: a fresh content key, sealed to this node and to every key server once
//! the manifest it is bound to is complete.
//!
//! Key servers are named `NODE_ID@URL` by the creator: the node id is what the key is sealed
//! to, the URL only where players reach it. Nothing is fetched from a key server, so a
//! publish cannot make the node request arbitrary URLs, and no key is ever sealed to
//! whoever happened to answer at an address.

use streamgate_protocol::{
    Manifest,
    access::{AccessPolicy, Encryption, EncryptionMethod, WrappedKey},
};
use streamgate_swarm::identity::Identity;

use super::PublishError;
use crate::services::access::{
    Access,
    keys::{self, ContentKey},
};

/// A gated video's policy, content key, and the nodes its key is sealed to.
pub(super) struct Gating {
    pub policy: AccessPolicy,
    pub key: ContentKey,
    /// Node key and public URL of each key server, this node first.
    servers: Vec<([u8; 32], String)>,
}

/// A key server as the creator names it: `NODE_ID@URL`, the node id in hex (its Ed25519
/// public key, as `GET /api/v1/status` and `streamgate status` show it).
pub fn parse_key_server(text: &str) -> Result<([u8; 32], String), String> {
    let (id, url) = text.split_once('@').ok_or_else(|| {
        format!("key server {text:?} is not NODE_ID@URL (the node id from its `streamgate status`)")
    })?;
    let mut node_key = [0u8; 32];
    hex::decode_to_slice(id, &mut node_key)
        .map_err(|_| format!("key server {text:?}: the node id is not 64 hex digits"))?;
    ed25519_dalek::VerifyingKey::from_bytes(&node_key)
        .map_err(|_| format!("key server {text:?}: the node id is not an Ed25519 key"))?;
    let url = url.trim_end_matches('/');
    streamgate_protocol::access::check_key_server_url(url)
        .map_err(|e| format!("key server {text:?}: {e}"))?;
    Ok((node_key, url.to_string()))
}

pub(super) fn prepare(
    policy: AccessPolicy,
    key_servers: &[String],
    identity: &Identity,
    access: &Access,
) -> Result<Gating, PublishError> {
    if !access.chain_ids().contains(&policy.chain_id) {
        tracing::warn!(
            "chain {} is not configured here; this node cannot release keys for this video until it is",
            policy.chain_id
        );
    }
    let mut servers = vec![(identity.public_key(), access.origin.clone())];
    for text in key_servers {
        let server = parse_key_server(text).map_err(PublishError::KeyServer)?;
        if !servers.iter().any(|(key, _)| *key == server.0) {
            servers.push(server);
        }
    }
    Ok(Gating {
        policy,
        key: keys::new_content_key(),
        servers,
    })
}

impl Gating {
    /// Puts the policy into `manifest` and seals the key to every key server, bound to the
    /// finished manifest (everything in it but the sealed bytes).
    pub fn seal_into(self, manifest: &mut Manifest) -> Result<(), PublishError> {
        manifest.access = Some(self.policy);
        manifest.encryption = Some(Encryption {
            method: EncryptionMethod::Aes128,
            key_wraps: self
                .servers
                .iter()
                .map(|(node_key, url)| WrappedKey {
                    node_key: *node_key,
                    url: Some(url.clone()),
                    sealed: Vec::new(),
                })
                .collect(),
        });
        let binding = manifest.key_binding();
        let sealed: Result<Vec<WrappedKey>, String> = self
            .servers
            .into_iter()
            .map(|(node_key, url)| keys::seal(&self.key, &binding, &node_key, Some(url)))
            .collect();
        if let Some(encryption) = &mut manifest.encryption {
            encryption.key_wraps = sealed.map_err(PublishError::KeyServer)?;
        }
        Ok(())
    }
}
