//! What the bootstrap's relays carry at most: its operator pays for every relayed byte.
//!
//! The iroh relay (data plane) admits at most `max_nodes` nodes at once, each with a few
//! connections (a reconnecting node overlaps its old connection briefly), and reads at
//! most `--relay-rate` bytes per second from each. The libp2p circuit relay (control
//! traffic only) holds as many reservations as the iroh relay admits nodes.

use std::{collections::HashMap, hash::Hash, sync::Mutex};

use iroh_relay::server::{Access, AccessControl, ClientRequest, ConnectionId};

/// Connections one node may hold on the relay at once.
pub const CONNECTIONS_PER_NODE: u32 = 4;

/// Admission bookkeeping: connections per node, and the cap on nodes.
#[derive(Debug)]
pub struct Slots<K> {
    max_nodes: usize,
    connections: Mutex<HashMap<K, u32>>,
}

impl<K: Eq + Hash + Clone> Slots<K> {
    pub fn new(max_nodes: usize) -> Self {
        Self {
            max_nodes,
            connections: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a connection slot for `node`, or says why there is none.
    pub fn take(&self, node: &K) -> Result<(), String> {
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let known = connections.len();
        match connections.get_mut(node) {
            Some(held) if *held >= CONNECTIONS_PER_NODE => Err(format!(
                "this node already holds {CONNECTIONS_PER_NODE} connections to the relay"
            )),
            Some(held) => {
                *held += 1;
                Ok(())
            }
            None if known >= self.max_nodes => Err(format!(
                "relay full: {} nodes connected (the operator's --relay-max-nodes)",
                self.max_nodes
            )),
            None => {
                connections.insert(node.clone(), 1);
                Ok(())
            }
        }
    }

    /// Returns a slot [`Slots::take`] gave.
    pub fn give_back(&self, node: &K) {
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = connections.get_mut(node) {
            *held -= 1;
            if *held == 0 {
                connections.remove(node);
            }
        }
    }
}

/// The iroh relay's admission control over [`Slots`], keyed by the node's Ed25519 key.
#[derive(Debug)]
pub struct NodeSlots(pub Slots<[u8; 32]>);

impl AccessControl for NodeSlots {
    async fn on_connect(&self, request: &ClientRequest) -> Access {
        let node = *request.endpoint_id().as_bytes();
        match self.0.take(&node) {
            Ok(()) => Access::Allow,
            Err(reason) => {
                tracing::info!(node = %request.endpoint_id().fmt_short(), "relay refused a connection: {reason}");
                Access::Deny {
                    reason: Some(reason),
                }
            }
        }
    }

    fn on_disconnect(&self, endpoint_id: iroh_base::EndpointId, _: ConnectionId) {
        self.0.give_back(endpoint_id.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_beyond_the_cap_are_refused_until_one_leaves() {
        let slots = Slots::new(2);
        slots.take(&1).expect("first node");
        slots.take(&2).expect("second node");
        let refused = slots.take(&3).expect_err("third node");
        assert!(refused.contains("relay full: 2 nodes"), "{refused}");
        // A node already admitted may reconnect while the cap is reached.
        slots.take(&1).expect("second connection of a known node");
        slots.give_back(&2);
        slots.take(&3).expect("room after a node left");
    }

    #[test]
    fn one_node_cannot_hold_more_than_its_connections() {
        let slots = Slots::new(100);
        for _ in 0..CONNECTIONS_PER_NODE {
            slots.take(&7).expect("within the per-node cap");
        }
        assert!(slots.take(&7).is_err());
        slots.give_back(&7);
        slots.take(&7).expect("a slot came back");
        // Giving back what was never taken changes nothing.
        slots.give_back(&8);
        assert!(slots.take(&7).is_err());
    }
}
