//! A relay without configuration: bootstrap nodes advertise their iroh relay in a signed
//! node record; a node whose configuration names no relay reads those records and uses
//! the first relay it finds, so that a node behind NAT can be reached through it.
//!
//! The record is signed by the bootstrap's key, and the bootstrap's peer id is part of the
//! configured address (`/p2p/<peer id>`), so only the bootstrap itself can say which relay
//! the nodes that join through it use.

use std::{net::IpAddr, sync::Arc, time::Duration};

use iroh::RelayUrl;
use multiaddr::{Multiaddr, PeerId, Protocol};
use streamgate_swarm::{SwarmHandle, identity::node_key_of};

use crate::{actors::data_plane::DataPlane, services::presence::Presence};

/// Waits between rounds of asking the bootstrap nodes: quick while the node is joining,
/// then once a minute for as long as none answers.
const RETRY_DELAYS_SECS: [u64; 6] = [1, 2, 4, 8, 16, 30];
const RETRY_EVERY_SECS: u64 = 60;

/// Asks each bootstrap node for its record until one names a relay, then makes that the
/// data plane's relay and republishes this node's record with it.
pub async fn adopt_bootstrap_relay(
    bootstrap: Vec<Multiaddr>,
    swarm: SwarmHandle,
    data_plane: DataPlane,
    presence: Arc<Presence>,
) {
    let mut round = 0;
    loop {
        for addr in &bootstrap {
            let Some(url) = advertised_relay(addr, &swarm).await else {
                continue;
            };
            tracing::info!(%url, bootstrap = %addr, "using the bootstrap node's relay");
            data_plane.use_relay(url).await;
            presence.publish().await;
            return;
        }
        let delay = RETRY_DELAYS_SECS
            .get(round)
            .copied()
            .unwrap_or(RETRY_EVERY_SECS);
        round += 1;
        if round == RETRY_DELAYS_SECS.len() {
            tracing::warn!(
                "no bootstrap node advertises a relay yet; nodes behind NAT cannot reach this one until one does"
            );
        }
        tokio::time::sleep(Duration::from_secs(delay)).await;
    }
}

/// The relay the bootstrap at `addr` advertises in its verified record, if any.
async fn advertised_relay(addr: &Multiaddr, swarm: &SwarmHandle) -> Option<RelayUrl> {
    let peer = peer_of(addr)?;
    // The swarm verifies the record's signature against the key in the peer id.
    let record = swarm.find_node_record(peer).await.ok()??;
    let advertised: RelayUrl = record.record.relay_url.as_deref()?.parse().ok()?;
    Some(reachable_relay_url(advertised, addr))
}

/// The Ed25519 keys in the peer ids of the bootstrap addresses: the keys whose relays'
/// address-discovery certificates the data plane trusts.
pub fn bootstrap_keys(bootstrap: &[Multiaddr]) -> Vec<[u8; 32]> {
    bootstrap
        .iter()
        .filter_map(|addr| node_key_of(&peer_of(addr)?))
        .collect()
}

/// The peer id a bootstrap address ends in (`/p2p/<peer id>`).
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

/// A bootstrap whose relay listens on an unspecified address (`0.0.0.0`, `::`) does not
/// know which of its addresses others reach it at; the node does: the host of the
/// bootstrap address it joined through.
pub fn reachable_relay_url(advertised: RelayUrl, bootstrap: &Multiaddr) -> RelayUrl {
    let unspecified = advertised
        .host_str()
        .map(|host| host.trim_start_matches('[').trim_end_matches(']'))
        .and_then(|host| host.parse::<IpAddr>().ok())
        .is_some_and(|ip| ip.is_unspecified());
    if !unspecified {
        return advertised;
    }
    let mut url = (*advertised).clone();
    let replaced = bootstrap.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => url.set_ip_host(IpAddr::V4(ip)).ok(),
        Protocol::Ip6(ip) => url.set_ip_host(IpAddr::V6(ip)).ok(),
        Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name) => {
            url.set_host(Some(&name)).ok()
        }
        _ => None,
    });
    match replaced {
        Some(()) => RelayUrl::from(url),
        None => advertised,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> RelayUrl {
        s.parse().expect("valid relay url")
    }

    fn addr(s: &str) -> Multiaddr {
        s.parse().expect("valid multiaddr")
    }

    #[test]
    fn an_unspecified_relay_host_becomes_the_bootstrap_address_the_node_joined_through() {
        let joined = addr("/ip4/198.18.0.1/tcp/4001");
        assert_eq!(
            reachable_relay_url(url("http://0.0.0.0:3340"), &joined),
            url("http://198.18.0.1:3340")
        );
        assert_eq!(
            reachable_relay_url(url("http://[::]:3340"), &addr("/ip6/2001:db8::1/tcp/4001")),
            url("http://[2001:db8::1]:3340")
        );
        assert_eq!(
            reachable_relay_url(
                url("http://0.0.0.0:3340"),
                &addr("/dns4/boot.example/tcp/1")
            ),
            url("http://boot.example:3340")
        );
    }

    #[test]
    fn a_named_relay_host_is_kept() {
        let joined = addr("/ip4/198.18.0.1/tcp/4001");
        for kept in ["http://198.18.0.9:3340", "https://relay.example/"] {
            assert_eq!(reachable_relay_url(url(kept), &joined), url(kept));
        }
        // Nothing to put in: the advertised URL stays as it is.
        assert_eq!(
            reachable_relay_url(url("http://0.0.0.0:3340"), &addr("/memory/1")),
            url("http://0.0.0.0:3340")
        );
    }
}
