//! Home nodes behind NAT, in network namespaces this test makes (see `netns.rs` in the
//! harness): a bootstrap node and node A on a public segment, nodes B and C each behind its
//! own masquerading router. Every node runs with the default configuration; nothing but
//! the bootstrap address is given to them.

use std::path::Path;

use streamgate_tests::{
    Bootstrap, Node, NodeConfig, NodeStatus, PathKind, PeerPath, ReachMode, add_file, cli,
    init_node_dir,
    media::{decode_errors, make_clip},
    netns::{Namespace, Topology, Unsolicited},
    publish, start_bootstrap_listening, start_node_listening, status, test_bytes, wait_until,
};

/// One node of the topology and the namespace it runs in.
struct Home {
    ns: Namespace,
    node: Node,
}

impl Home {
    fn status(&self) -> NodeStatus {
        let api = self.node.info.api_url.clone();
        self.ns
            .enter(|| status(&api))
            .expect("enter namespace")
            .unwrap_or_else(|e| panic!("status of {}: {e}", self.ns.name))
    }

    /// The first status (within 60 s) that `ready` accepts; the test fails with the last
    /// one seen otherwise.
    fn status_once(&self, ready: impl Fn(&NodeStatus) -> bool) -> NodeStatus {
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

    /// `streamgate add` of fresh bytes; their hash.
    fn add(&self, dir: &Path, seed: u64) -> (String, Vec<u8>) {
        let bytes = test_bytes(3 * 1024 * 1024 + 17, seed);
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
    fn get(&self, hash: &str, expected: &[u8], provider: &Home, dir: &Path) -> PeerPath {
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
    fn path_to(&self, peer: &Home) -> PeerPath {
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
struct Network {
    _bootstrap: Bootstrap,
    a: Home,
    b: Home,
    c: Home,
    /// B's router's public address: what B's peers see of B.
    router_b_addr: std::net::Ipv4Addr,
    _root: tempfile::TempDir,
    _topology: Topology,
}

const PUBLIC_LISTEN: &[&str] = &["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"];

fn start(unsolicited: Unsolicited) -> Network {
    start_with(unsolicited, &NodeConfig::default())
}

/// [`start`], with `b_config` for node B; the others run the default configuration.
fn start_with(unsolicited: Unsolicited, b_config: &NodeConfig) -> Network {
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
                &[],
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
        _bootstrap: bootstrap,
        a,
        b,
        c,
        router_b_addr: topology.router_b.addr,
        _root: root,
        _topology: topology,
    }
}

#[test]
fn home_nodes_behind_nat_serve_and_fetch_with_no_configuration() {
    let net = start(Unsolicited::KernelAnswers);
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path();

    // First, before B's data plane has ever sent A a packet, so no NAT mapping of B's
    // can carry A's dial: the hard case for a public node.
    let (hash, bytes) = net.b.add(dir, 2);
    let a_from_b = net.a.get(&hash, &bytes, &net.b, dir);
    // A second blob: once A has fetched one, A provides it too.
    let (hash, bytes) = net.b.add(dir, 3);
    let c_from_b = net.c.get(&hash, &bytes, &net.b, dir);

    let (hash, bytes) = net.a.add(dir, 1);
    let b_from_a = net.b.get(&hash, &bytes, &net.a, dir);

    // A clip published on a home node plays from the public one.
    let clip = dir.join("clip.mp4");
    make_clip(&clip, 4, "640x360", 30, true).expect("clip");
    let b_api = net.b.node.info.api_url.clone();
    let state = dir.join("state");
    let published = net
        .b
        .ns
        .enter(|| publish(&b_api, &clip, &["--title", "Home clip"], &state))
        .expect("enter namespace")
        .unwrap_or_else(|e| panic!("publish on B failed: {e}\n{}", net.b.node.log()));
    let master = format!(
        "{}/hls/{}/master.m3u8",
        net.a.node.info.api_url, published.manifest_id
    );
    let errors = net
        .a
        .ns
        .enter(|| decode_errors(&master, &[]))
        .expect("enter namespace")
        .unwrap_or_else(|e| {
            panic!(
                "{e}\nA's log:\n{}\nB's log:\n{}",
                net.a.node.log(),
                net.b.node.log()
            )
        });
    assert!(
        errors.is_empty(),
        "decode errors playing B's clip on A: {errors}"
    );
    let a_from_b_clip = net.a.path_to(&net.b);

    eprintln!(
        "paths taken (default routers, unsolicited packets answered by the router's kernel):"
    );
    for (case, path) in [
        ("B fetches A's blob", &b_from_a),
        ("A fetches a blob only B holds", &a_from_b),
        ("C fetches a blob only B holds", &c_from_b),
        ("B's clip played from A", &a_from_b_clip),
    ] {
        eprintln!("  {case}: {} via {}", path.path.as_str(), path.remote_addr);
    }
    // A public node is reached on its own address: its bytes never need the relay.
    assert_ne!(b_from_a.path, PathKind::Relayed, "B to A: {b_from_a:?}");

    // Each says how it is reachable, and why. A: public on both planes, a DHT server.
    let a = net.a.status_once(|s| {
        s.reachability.mode == ReachMode::Public
            && !s.swarm.public_addrs.is_empty()
            && s.swarm.dht_mode == "server"
    });
    let a_ip = net.a.ns.addr.to_string();
    assert!(
        a.reachability
            .public_addr
            .as_deref()
            .is_some_and(|p| p.starts_with(&format!("{a_ip}:"))),
        "A's public address: {:?}",
        a.reachability
    );
    // B: behind its router (address discovery sees the router's address), libp2p reachable
    // only through a reservation on the bootstrap's circuit relay, so a DHT client.
    let router_b = net.router_b_addr;
    let b = net.b.status_once(|s| {
        s.reachability.mode == ReachMode::BehindNat
            && s.reachability
                .public_addr
                .as_deref()
                .is_some_and(|p| p.starts_with(&format!("{router_b}:")))
            && s.swarm.public_addrs.is_empty()
            && s.swarm
                .relayed_addrs
                .iter()
                .any(|r| r.contains("/p2p-circuit"))
            && s.swarm.autonat.probes_failed > 0
    });
    assert_eq!(b.swarm.dht_mode, "client", "B: {:?}", b.swarm);
    for (name, s) in [("A", &a), ("B", &b)] {
        eprintln!(
            "{name}: data plane {} ({}); libp2p public {:?}, relayed {:?}, DHT {}",
            s.reachability.mode.as_str(),
            s.reachability.why,
            s.swarm.public_addrs,
            s.swarm.relayed_addrs,
            s.swarm.dht_mode
        );
    }
}

/// C fetches what only B holds: both behind NAT, each router handling unsolicited packets
/// as `unsolicited` says. The fetch must work whichever path it takes.
fn home_to_home(unsolicited: Unsolicited) {
    let net = start(unsolicited);
    let scratch = tempfile::tempdir().expect("tempdir");
    let (hash, bytes) = net.b.add(scratch.path(), 3);
    let path = net.c.get(&hash, &bytes, &net.b, scratch.path());
    eprintln!(
        "C fetches a blob only B holds, routers {unsolicited:?}: {} via {}",
        path.path.as_str(),
        path.remote_addr
    );
    // The relay's address discovery told each its public address, so the two punch a
    // direct path while the connection lasts (it may begin after the bytes went through
    // the relay).
    let mut last = path;
    let punched = wait_until(std::time::Duration::from_secs(10), || {
        last = net.c.path_to(&net.b);
        last.path == PathKind::HolePunched
    });
    assert!(
        punched,
        "C and B never punched a direct path (routers {unsolicited:?}): {last:?}"
    );
    eprintln!("  then {} via {}", last.path.as_str(), last.remote_addr);
}

#[test]
fn home_to_home_works_when_routers_drop_unsolicited_packets() {
    home_to_home(Unsolicited::Dropped);
}

#[test]
fn home_to_home_works_when_routers_answer_unsolicited_packets_with_resets() {
    home_to_home(Unsolicited::Reset);
}

#[test]
fn a_home_node_without_a_relay_is_reported_unreachable_never_missing() {
    let mut no_relay = NodeConfig::default();
    no_relay.data_plane.bootstrap_relay = false;
    let net = start_with(Unsolicited::Dropped, &no_relay);
    let scratch = tempfile::tempdir().expect("tempdir");
    let (hash, _) = net.b.add(scratch.path(), 4);
    let out = scratch.path().join("never");
    let api = net.a.node.info.api_url.clone();
    for attempt in ["first", "second"] {
        let result = net
            .a
            .ns
            .enter(|| cli(&api, &["get", &hash, "-o", out.to_str().expect("utf-8")]))
            .expect("enter namespace");
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(
            !result.status.success(),
            "{attempt} get reached B: {stderr}"
        );
        assert!(
            stderr.contains("behind NAT, no relay"),
            "{attempt} get does not say why B is unreachable: {stderr}"
        );
        assert!(
            !stderr.contains("no node in the swarm provides it"),
            "{attempt} get says nobody provides what B provides: {stderr}"
        );
    }
}
