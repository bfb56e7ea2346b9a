//! Gated publishing: a fresh content key, sealed to this node and to every key server.

use std::time::Duration;

use serde::Deserialize;
use streamgate_protocol::access::{AccessPolicy, Encryption, EncryptionMethod};
use streamgate_swarm::identity::Identity;

use super::PublishError;
use crate::services::access::{
    Access,
    keys::{self, ContentKey},
};

/// How long a key server may take to say who it is.
const KEY_SERVER_TIMEOUT: Duration = Duration::from_secs(10);

/// A gated video's policy, content key, and the key sealed to every key server.
pub(super) struct Gating {
    pub policy: AccessPolicy,
    pub key: ContentKey,
    pub encryption: Encryption,
}

/// What a key server's status says of its identity.
#[derive(Deserialize)]
struct KeyServerIdentity {
    node_id: String,
}

pub(super) async fn prepare(
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
    let key = keys::new_content_key();
    let mut key_wraps = vec![
        keys::seal(&key, &identity.public_key(), Some(access.origin.clone()))
            .map_err(PublishError::KeyServer)?,
    ];
    let client = reqwest::Client::builder()
        .timeout(KEY_SERVER_TIMEOUT)
        .build()
        .map_err(|e| PublishError::KeyServer(e.to_string()))?;
    for url in key_servers {
        let url = url.trim_end_matches('/');
        let status: KeyServerIdentity = client
            .get(format!("{url}/api/v1/status"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| PublishError::KeyServer(format!("cannot reach {url}: {e}")))?
            .json()
            .await
            .map_err(|e| PublishError::KeyServer(format!("{url} answered oddly: {e}")))?;
        let mut node_key = [0u8; 32];
        hex::decode_to_slice(&status.node_id, &mut node_key)
            .map_err(|_| PublishError::KeyServer(format!("{url} did not say its node id")))?;
        key_wraps.push(
            keys::seal(&key, &node_key, Some(url.to_string())).map_err(PublishError::KeyServer)?,
        );
    }
    Ok(Gating {
        policy,
        key,
        encryption: Encryption {
            method: EncryptionMethod::Aes128,
            key_wraps,
        },
    })
}
