//! Home nodes behind NAT, in network namespaces this test makes (see `netns.rs` and
//! `home_network.rs` in the harness): a bootstrap node and node A on a public segment,
//! nodes B and C each behind its own masquerading router. Every node runs with the default
//! configuration; nothing but the bootstrap address is given to them.

use streamgate_tests::{
    NodeConfig, PathKind, ReachMode, cli,
    home_network::{start, start_with},
    media::{decode_errors, make_clip},
    netns::Unsolicited,
    publish, wait_until,
};

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
    let net = start_with(Unsolicited::Dropped, &no_relay, &[]);
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
