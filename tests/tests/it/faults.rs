//! Providers that lie, providers that die, and content nobody has.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use streamgate_tests::{
    add_file, bin, cli, get_file, init_node_dir, liar_config, provider_standing, start_bootstrap,
    start_node, status, test_bytes, test_config, wait_until,
};

#[test]
fn corrupt_provider_is_caught_penalised_and_the_fetch_completes_elsewhere() {
    let root = tempfile::tempdir().expect("tempdir");
    let bootstrap = start_bootstrap(&root.path().join("bootstrap")).expect("bootstrap");
    let entry = vec![bootstrap.info.listen_addrs[0].clone()];
    // The liar flips one bit 200 000 bytes into every blob stream it serves.
    let liar_dir = root.path().join("liar");
    init_node_dir(&liar_dir, &liar_config(200000)).expect("init");
    let liar = start_node(&liar_dir, &entry).expect("liar");
    let honest_dir = root.path().join("honest");
    init_node_dir(&honest_dir, &test_config()).expect("init");
    let honest = start_node(&honest_dir, &entry).expect("honest");
    let fetcher_dir = root.path().join("fetcher");
    init_node_dir(&fetcher_dir, &test_config()).expect("init");
    let fetcher = start_node(&fetcher_dir, &entry).expect("fetcher");

    // 16 MiB: four 4 MiB ranges, so both providers are asked at once.
    let payload = test_bytes(16 * 1024 * 1024, 2);
    let file = root.path().join("payload.bin");
    std::fs::write(&file, &payload).expect("write");
    let hash = add_file(&liar.info.api_url, &file);
    assert_eq!(add_file(&honest.info.api_url, &file), hash);

    let out_path = root.path().join("out.bin");
    assert_eq!(
        get_file(&fetcher, &hash, &out_path),
        payload,
        "fetched bytes differ"
    );

    let s = status(&fetcher.info.api_url).expect("status");
    let bad = provider_standing(&s, &liar.info.peer_id)
        .unwrap_or_else(|| panic!("liar not in provider book: {s:#?}"));
    assert!(bad.corrupt >= 1, "liar not marked corrupt: {bad:?}");
    assert!(bad.banned, "liar not banned: {bad:?}");
    let good = provider_standing(&s, &honest.info.peer_id).expect("honest provider in book");
    assert!(good.successes >= 1, "{good:?}");
    assert!(!good.banned);
    assert!(
        fetcher.log().contains("verification failed"),
        "the fetcher did not log the verification failure:\n{}",
        fetcher.log()
    );
}

#[test]
fn provider_killed_mid_transfer_and_the_fetch_completes_from_another() {
    let root = tempfile::tempdir().expect("tempdir");
    let bootstrap = start_bootstrap(&root.path().join("bootstrap")).expect("bootstrap");
    let entry = vec![bootstrap.info.listen_addrs[0].clone()];
    // Slow providers (4 MiB/s each) so that the kill lands mid-transfer.
    let mut capped = test_config();
    capped.data_plane.max_upload_bytes_per_sec = 4 << 20;
    let mut providers = Vec::new();
    for name in ["doomed", "survivor"] {
        let dir = root.path().join(name);
        init_node_dir(&dir, &capped).expect("init");
        providers.push(start_node(&dir, &entry).expect("provider"));
    }
    let fetcher_dir = root.path().join("fetcher");
    init_node_dir(&fetcher_dir, &test_config()).expect("init");
    let fetcher = start_node(&fetcher_dir, &entry).expect("fetcher");

    let payload = test_bytes(24 * 1024 * 1024, 3);
    let file = root.path().join("payload.bin");
    std::fs::write(&file, &payload).expect("write");
    let hash = add_file(&providers[0].info.api_url, &file);
    assert_eq!(add_file(&providers[1].info.api_url, &file), hash);

    let out_path = root.path().join("out.bin");
    let mut get = Command::new(bin("streamgate"))
        .args(["--node", &fetcher.info.api_url, "get", &hash, "-o"])
        .arg(&out_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn get");

    // Kill the first provider once it has served at least 2 MiB of this blob.
    let doomed_api = providers[0].info.api_url.clone();
    let served_some = wait_until(Duration::from_secs(20), || {
        status(&doomed_api)
            .map(|s| s.bytes_served >= 2 * 1024 * 1024)
            .unwrap_or(false)
    });
    assert!(
        served_some,
        "the doomed provider never started serving:\n{}",
        fetcher.log()
    );
    providers[0].kill9();
    let killed_at = Instant::now();

    let output = loop {
        if get.try_wait().expect("wait").is_some() {
            break get.wait_with_output().expect("output");
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(90),
            "get did not finish:\n{}",
            fetcher.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        output.status.success(),
        "get failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        fetcher.log()
    );
    assert_eq!(std::fs::read(&out_path).expect("read"), payload);
    let s = status(&fetcher.info.api_url).expect("status");
    let dead = provider_standing(&s, &providers[0].info.peer_id).expect("doomed provider in book");
    assert!(dead.failures >= 1, "{dead:?}");
    let alive = provider_standing(&s, &providers[1].info.peer_id).expect("survivor in book");
    assert!(alive.successes >= 1, "{alive:?}");
}

#[test]
fn getting_a_hash_nobody_has_fails_clearly_in_bounded_time() {
    let root = tempfile::tempdir().expect("tempdir");
    let bootstrap = start_bootstrap(&root.path().join("bootstrap")).expect("bootstrap");
    let entry = vec![bootstrap.info.listen_addrs[0].clone()];
    let mut nodes = Vec::new();
    for i in 0..2 {
        let dir = root.path().join(format!("n{i}"));
        init_node_dir(&dir, &test_config()).expect("init");
        nodes.push(start_node(&dir, &entry).expect("node"));
    }
    let nobody_has = blake3::hash(b"content that was never added")
        .to_hex()
        .to_string();
    let out_path = root.path().join("never.bin");
    let started = Instant::now();
    let out = cli(
        &nodes[1].info.api_url,
        &["get", &nobody_has, "-o", out_path.to_str().expect("utf-8")],
    );
    let took = started.elapsed();
    assert!(!out.status.success(), "get of an unknown hash succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not found"), "unclear error: {stderr}");
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "error is not one line: {stderr}"
    );
    // fetch.find_timeout_secs is 5 in the test config; the answer must come near it.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(!out_path.exists(), "a file was written for a failed get");
}
