//! This node's signed record (where its data plane listens), re-signed and republished
//! every [`RECORD_REFRESH`], and carried in every announcement the node gossips.

use std::sync::RwLock;

use streamgate_protocol::{Announcement, ContentHash, SignedNodeRecord};
use streamgate_swarm::{SwarmHandle, daemon::unix_now, identity::Identity};

use crate::actors::data_plane::DataPlane;

pub use streamgate_swarm::records::RECORD_REFRESH;

#[derive(Debug)]
pub struct Presence {
    identity: Identity,
    data_plane: DataPlane,
    swarm: SwarmHandle,
    own: RwLock<SignedNodeRecord>,
}

impl Presence {
    pub fn new(identity: Identity, data_plane: DataPlane, swarm: SwarmHandle) -> Self {
        let own = data_plane
            .node_record(unix_now())
            .sign(&identity.signing_key());
        Self {
            identity,
            data_plane,
            swarm,
            own: RwLock::new(own),
        }
    }

    pub fn own_record(&self) -> SignedNodeRecord {
        match self.own.read() {
            Ok(record) => record.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Signs a fresh record and publishes it in the DHT.
    pub async fn publish(&self) {
        let record = self
            .data_plane
            .node_record(unix_now())
            .sign(&self.identity.signing_key());
        if let Ok(mut own) = self.own.write() {
            *own = record.clone();
        }
        if let Err(e) = self.swarm.publish_node_record(record).await {
            tracing::warn!("cannot publish node record: {e}");
        }
    }

    /// Gossips that this node now holds `hash` (`size` bytes).
    pub async fn announce(&self, hash: ContentHash, size: u64) {
        let announcement = Announcement {
            hash,
            size,
            provider: self.own_record(),
        };
        if let Err(e) = self.swarm.announce(announcement).await {
            tracing::warn!("cannot announce {}: {e}", hash.short());
        }
    }
}
