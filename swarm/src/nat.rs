//! Whether peers can dial this node over libp2p, and what it does when they cannot.
//!
//! AutoNAT v2 asks connected peers to dial each candidate address back (candidates come from
//! what identify says peers observed). A confirmed address means a direct dial works. When a
//! probe fails and no address is confirmed, the node is behind a NAT or firewall: it reserves
//! a slot on a bootstrap node's circuit relay, so peers reach it at
//! `<bootstrap>/p2p-circuit/p2p/<us>` and DCUtR can try to upgrade such a connection to a
//! direct one. The reservation is dropped once a direct address is confirmed.
//!
//! Relayed addresses never make a node a DHT server: a Kademlia server is dialled by every
//! peer that walks past it, and the relay carries control traffic only (128 KiB and two
//! minutes per circuit by default), so a relayed server would be a hole in everyone's walks.

use libp2p::{Multiaddr, core::transport::ListenerId, kad, multiaddr::Protocol};

/// Reachability state kept by the swarm's actor.
#[derive(Debug)]
pub(crate) struct NatState {
    /// The configured DHT mode is `auto`: the mode follows confirmed direct addresses.
    auto_dht_mode: bool,
    /// Whether to reserve a relay slot when unreachable (not on nodes declared reachable).
    may_reserve: bool,
    /// Bootstrap addresses (ending in `/p2p/<id>`), whose nodes run circuit relays.
    relays: Vec<Multiaddr>,
    next_relay: usize,
    reservation: Option<(ListenerId, Multiaddr)>,
    pub(crate) probes_ok: u64,
    pub(crate) probes_failed: u64,
    pub(crate) last_probe_error: Option<String>,
}

/// What the actor should do after an event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NatAction {
    None,
    /// Listen on this `/p2p-circuit` address (a reservation on its relay).
    Reserve(Multiaddr),
    /// Close the reservation's listener: a direct address works.
    Release(ListenerId),
}

pub(crate) fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

/// Kademlia's mode for the confirmed external addresses: server only with a direct one.
pub(crate) fn dht_mode_for<'a>(confirmed: impl IntoIterator<Item = &'a Multiaddr>) -> kad::Mode {
    if confirmed.into_iter().any(|a| !is_relayed(a)) {
        kad::Mode::Server
    } else {
        kad::Mode::Client
    }
}

impl NatState {
    pub(crate) fn new(auto_dht_mode: bool, may_reserve: bool, bootstrap: &[Multiaddr]) -> Self {
        let relays = bootstrap
            .iter()
            .filter(|a| matches!(a.iter().last(), Some(Protocol::P2p(_))) && !is_relayed(a))
            .cloned()
            .collect();
        Self {
            auto_dht_mode,
            may_reserve,
            relays,
            next_relay: 0,
            reservation: None,
            probes_ok: 0,
            probes_failed: 0,
            last_probe_error: None,
        }
    }

    pub(crate) fn auto_dht_mode(&self) -> bool {
        self.auto_dht_mode
    }

    /// An AutoNAT probe's result, with the currently confirmed external addresses.
    pub(crate) fn on_probe<'a>(
        &mut self,
        result: Result<(), String>,
        confirmed: impl IntoIterator<Item = &'a Multiaddr>,
    ) -> NatAction {
        match result {
            Ok(()) => {
                self.probes_ok += 1;
                NatAction::None
            }
            Err(reason) => {
                self.probes_failed += 1;
                self.last_probe_error = Some(reason);
                let reachable = confirmed.into_iter().any(|a| !is_relayed(a));
                if reachable || !self.may_reserve || self.reservation.is_some() {
                    return NatAction::None;
                }
                match self.relays.get(self.next_relay % self.relays.len().max(1)) {
                    Some(relay) => {
                        self.next_relay += 1;
                        NatAction::Reserve(relay.clone().with(Protocol::P2pCircuit))
                    }
                    None => NatAction::None,
                }
            }
        }
    }

    /// The listener of a reservation the actor opened.
    pub(crate) fn reserving(&mut self, id: ListenerId, addr: Multiaddr) {
        self.reservation = Some((id, addr));
    }

    /// A direct address was confirmed: the reservation is no longer needed.
    pub(crate) fn on_confirmed(&mut self, addr: &Multiaddr) -> NatAction {
        if is_relayed(addr) {
            return NatAction::None;
        }
        match self.reservation.take() {
            Some((id, _)) => NatAction::Release(id),
            None => NatAction::None,
        }
    }

    /// A listener closed; when it was the reservation (the answer is whether it was), the
    /// next failed probe tries the next relay.
    pub(crate) fn on_listener_closed(&mut self, id: ListenerId) -> bool {
        let was_reservation = self.reservation.as_ref().is_some_and(|(own, _)| *own == id);
        if was_reservation {
            self.reservation = None;
        }
        was_reservation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().expect("multiaddr")
    }

    fn relay(ip: &str) -> String {
        format!("/ip4/{ip}/tcp/4001/p2p/{}", libp2p::PeerId::random())
    }

    #[test]
    fn relayed_addresses_never_make_a_dht_server() {
        let relay = relay("198.18.0.1");
        let direct = addr("/ip4/198.18.0.2/tcp/4001");
        let relayed = addr(&format!("{relay}/p2p-circuit"));
        assert_eq!(dht_mode_for([&relayed]), kad::Mode::Client);
        assert_eq!(dht_mode_for([]), kad::Mode::Client);
        assert_eq!(dht_mode_for([&relayed, &direct]), kad::Mode::Server);
    }

    #[test]
    fn a_failed_probe_reserves_once_and_a_confirmed_address_releases() {
        let relay = relay("198.18.0.1");
        let mut nat = NatState::new(true, true, &[addr(&relay)]);
        let circuit = addr(&format!("{relay}/p2p-circuit"));
        assert_eq!(
            nat.on_probe(Err("dial back failed".into()), []),
            NatAction::Reserve(circuit.clone())
        );
        let id = ListenerId::next();
        nat.reserving(id, circuit.clone());
        // Further failures while the reservation stands ask for nothing more.
        assert_eq!(nat.on_probe(Err("again".into()), []), NatAction::None);
        // The relayed address being confirmed is not a reason to release it.
        assert_eq!(nat.on_confirmed(&circuit), NatAction::None);
        assert_eq!(
            nat.on_confirmed(&addr("/ip4/198.18.0.3/tcp/4001")),
            NatAction::Release(id)
        );
        assert_eq!((nat.probes_ok, nat.probes_failed), (0, 2));
        assert_eq!(nat.last_probe_error.as_deref(), Some("again"));
    }

    #[test]
    fn no_reservation_when_reachable_declared_or_without_relays() {
        let relay = addr(&relay("198.18.0.1"));
        let direct = addr("/ip4/198.18.0.2/tcp/4001");
        let mut reachable = NatState::new(true, true, std::slice::from_ref(&relay));
        assert_eq!(
            reachable.on_probe(Err("x".into()), [&direct]),
            NatAction::None
        );
        let mut declared = NatState::new(false, false, &[relay]);
        assert_eq!(declared.on_probe(Err("x".into()), []), NatAction::None);
        // A bootstrap address without a peer id cannot name a relay.
        let mut no_relay = NatState::new(true, true, &[addr("/ip4/198.18.0.1/tcp/4001")]);
        assert_eq!(no_relay.on_probe(Err("x".into()), []), NatAction::None);
    }

    #[test]
    fn a_closed_reservation_moves_to_the_next_relay() {
        let second = relay("198.18.0.9");
        let mut nat = NatState::new(true, true, &[addr(&relay("198.18.0.1")), addr(&second)]);
        let NatAction::Reserve(first) = nat.on_probe(Err("x".into()), []) else {
            panic!("expected a reservation");
        };
        let id = ListenerId::next();
        nat.reserving(id, first);
        assert!(!nat.on_listener_closed(ListenerId::next()));
        assert!(nat.on_listener_closed(id));
        assert!(nat.reservation.is_none());
        assert_eq!(
            nat.on_probe(Err("x".into()), []),
            NatAction::Reserve(addr(&format!("{second}/p2p-circuit")))
        );
    }
}
