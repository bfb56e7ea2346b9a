//! The NAT topology of [`crate::netns`] with StreamGate running in it: a bootstrap node
//! and node A on the public segment, nodes B and C each behind its own masquerading router.
//! Every node runs with the default configuration; nothing but the bootstrap address is
//! given to them. Used by the NAT tests and `make bench-nat`.

use std::path::Path;

use crate::{
    Bootstrap, Node, NodeConfig, NodeStatus, PeerPath, add_file, cli, init_node_dir,
    netns::{Namespace, Topology, Unsolicited},
    start_bootstrap_listening, start_node_listening, status, test_bytes, wait_until,
};

/// One node of the topology and the namespace it runs in.
#[derive(Debug)]
pub struct Home {
    pub ns: Namespace,
    pub node: Node,
}

impl Home {
    pub fn status(&self) -> NodeStatus {
        let api = self.node.info.api_url.clone();
        self.ns
            .enter(|| status(&api))
            .expect("enter namespace")
            .unwrap_or_else(|e| panic!("status of {}: {e}", self.ns.name))
    }

    /// The first status (within 60 s) that `ready` accepts; the test fails with the last
    /// one seen otherwise.
    pub fn status_once(&self, ready: impl Fn(&NodeStatus) -> bool) -> NodeStatus {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let status = self.status();
            if ready(&status) {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{}'s status never showed the expected reachability: {:?}\n{:?}\nits log:\n{}",
                self.ns.name,
                status.reachability,
                status.swarm,
                self.node.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }

    /// `streamgate add` of fresh bytes (3 MiB); their hash.
    pub fn add(&self, dir: &Path, seed: u64) -> (String, Vec<u8>) {
        self.add_bytes(dir, seed, 3 * 1024 * 1024 + 17)
    }

    /// `streamgate add` of `len` fresh bytes made from `seed`; their hash.
    pub fn add_bytes(&self, dir: &Path, seed: u64, len: usize) -> (String, Vec<u8>) {
        let bytes = test_bytes(len, seed);
        let file = dir.join(format!("blob-{seed}"));
        std::fs::write(&file, &bytes).expect("write blob");
        let api = self.node.info.api_url.clone();
        let hash = self
            .ns
            .enter(|| add_file(&api, &file))
            .expect("enter namespace");
        (hash, bytes)
    }

    /// `streamgate get HASH`, which must succeed with `expected`; the path the fetch took
    /// to `provider`.
    pub fn get(&self, hash: &str, expected: &[u8], provider: &Home, dir: &Path) -> PeerPath {
        let out = dir.join(format!("got-{hash}"));
        let api = self.node.info.api_url.clone();
        let result = self
            .ns
            .enter(|| cli(&api, &["get", hash, "-o", out.to_str().expect("utf-8")]))
            .expect("enter namespace");
        assert!(
            result.status.success(),
            "{} could not get {hash} from {}: {}\nits log:\n{}\nprovider's log:\n{}",
            self.ns.name,
            provider.ns.name,
            String::from_utf8_lossy(&result.stderr),
            self.node.log(),
            provider.node.log()
        );
        assert!(
            std::fs::read(&out).expect("read fetched") == expected,
            "{} fetched wrong bytes for {hash}",
            self.ns.name
        );
        let path = self.path_to(provider);
        eprintln!(
            "{} fetched {} from {}: {} via {}",
            self.ns.name,
            &hash[..8],
            provider.ns.name,
            path.path.as_str(),
            path.remote_addr
        );
        path
    }

    /// What this node's status says of its connection to `peer`.
    pub fn path_to(&self, peer: &Home) -> PeerPath {
        let id = &peer.node.info.data_plane.node_id;
        let status = self.status();
        status
            .reachability
            .peers
            .iter()
            .find(|p| &p.node_id == id)
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "{} has no path to {}: {:?}",
                    self.ns.name, peer.ns.name, status.reachability
                )
            })
    }
}

/// The running topology: the namespaces outlive the processes in them (fields drop in
/// order, so the topology goes last).
#[derive(Debug)]
pub struct Network {
    pub bootstrap: Bootstrap,
    pub a: Home,
    pub b: Home,
    pub c: Home,
    /// B's router's public address: what B's peers see of B.
    pub router_b_addr: std::net::Ipv4Addr,
    _root: tempfile::TempDir,
    pub topology: Topology,
}

const PUBLIC_LISTEN: &[&str] = &["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"];

pub fn start(unsolicited: Unsolicited) -> Network {
    start_with(unsolicited, &NodeConfig::default(), &[])
}

/// [`start`], with `b_config` for node B (the others run the default configuration) and
/// `bootstrap_args` for the bootstrap node.
pub fn start_with(
    unsolicited: Unsolicited,
    b_config: &NodeConfig,
    bootstrap_args: &[&str],
) -> Network {
    let topology = Topology::build(unsolicited).unwrap_or_else(|e| {
        panic!("cannot build the network namespaces (needs root, iproute2 and nftables): {e:#}")
    });
    let root = tempfile::tempdir().expect("tempdir");
    let relay_listen = format!("{}:3340", topology.bootstrap.addr);
    // The port nodes look for address discovery on.
    let qad_listen = format!("{}:7842", topology.bootstrap.addr);
    let bootstrap_dir = root.path().join("bootstrap");
    let bootstrap = topology
        .bootstrap
        .enter(|| {
            start_bootstrap_listening(
                &bootstrap_dir,
                PUBLIC_LISTEN,
                &relay_listen,
                &qad_listen,
                bootstrap_args,
            )
        })
        .expect("enter namespace")
        .expect("bootstrap");
    let entry = vec![format!(
        "/ip4/{}/tcp/4001/p2p/{}",
        topology.bootstrap.addr, bootstrap.info.peer_id
    )];
    let home = |ns: &Namespace, config: &NodeConfig| {
        let dir = root.path().join(&ns.name);
        let node = ns
            .enter(|| {
                init_node_dir(&dir, config)?;
                start_node_listening(&dir, &entry, PUBLIC_LISTEN)
            })
            .expect("enter namespace")
            .unwrap_or_else(|e| panic!("node in {}: {e:#}", ns.name));
        Home {
            ns: ns.clone(),
            node,
        }
    };
    let defaults = NodeConfig::default();
    let (a, b, c) = (
        home(&topology.a, &defaults),
        home(&topology.b, b_config),
        home(&topology.c, &defaults),
    );
    // A home node is reachable once its record names the bootstrap's relay.
    let with_relay = [
        Some(&a),
        b_config.data_plane.bootstrap_relay.then_some(&b),
        Some(&c),
    ];
    for node in with_relay.into_iter().flatten() {
        assert!(
            wait_until(std::time::Duration::from_secs(30), || node
                .status()
                .reachability
                .relay_url
                .is_some()),
            "{} never learned the bootstrap's relay:\n{}",
            node.ns.name,
            node.node.log()
        );
    }
    Network {
        bootstrap,
        a,
        b,
        c,
        router_b_addr: topology.router_b.addr,
        _root: root,
        topology,
    }
}
