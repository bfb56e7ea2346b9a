//! Five nodes and a bootstrap node: content added on one is found and fetched by another.

use std::time::Duration;

use streamgate_tests::{
    LOOPBACK_LISTEN, add_file, get_file, init_node_dir, start_bootstrap, start_bootstrap_listening,
    start_node, status, test_bytes, test_config, wait_until,
};

#[test]
fn node_five_fetches_what_node_one_added_knowing_only_the_bootstrap() {
    let root = tempfile::tempdir().expect("tempdir");
    let bootstrap = start_bootstrap(&root.path().join("bootstrap")).expect("bootstrap");
    let entry = vec![bootstrap.info.listen_addrs[0].clone()];
    let mut nodes = Vec::new();
    for i in 1..=5 {
        let dir = root.path().join(format!("node{i}"));
        init_node_dir(&dir, &test_config()).expect("init");
        nodes.push(start_node(&dir, &entry).expect("start node"));
    }

    let payload = test_bytes(3 * 1024 * 1024 + 17, 1);
    let file = root.path().join("payload.bin");
    std::fs::write(&file, &payload).expect("write payload");
    let hash = add_file(&nodes[0].info.api_url, &file);
    assert_eq!(hash, blake3::hash(&payload).to_hex().to_string());

    let fetched = root.path().join("fetched.bin");
    assert_eq!(
        get_file(&nodes[4], &hash, &fetched),
        payload,
        "fetched bytes differ"
    );

    // Node 5 now holds and provides the blob itself.
    let s5 = status(&nodes[4].info.api_url).expect("status");
    assert_eq!(s5.blobs, 1);
    assert_eq!(s5.bytes_stored, payload.len() as u64);
    assert!(s5.swarm.connected_peers as u64 >= 1);

    // Clean shutdown: each process exits on SIGTERM within 5 s and removes its ready file.
    for node in &mut nodes {
        let (took, code) = node.terminate();
        assert!(code.success(), "node exited with {code}:\n{}", node.log());
        assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
        assert!(
            !node.data_dir.join("run/node.json").exists(),
            "ready file left behind"
        );
    }
}

#[test]
fn a_blob_streams_as_it_verifies_and_concurrent_readers_share_one_fetch() {
    use futures::StreamExt;
    let root = tempfile::tempdir().expect("tempdir");
    let bootstrap = start_bootstrap(&root.path().join("bootstrap")).expect("bootstrap");
    let entry = vec![bootstrap.info.listen_addrs[0].clone()];
    // A provider capped at 2 MiB/s, so the 6 MiB transfer lasts about three seconds.
    let mut slow = test_config();
    slow.data_plane.max_upload_bytes_per_sec = 2 << 20;
    let a_dir = root.path().join("a");
    init_node_dir(&a_dir, &slow).expect("init");
    let a = start_node(&a_dir, &entry).expect("a");
    let b_dir = root.path().join("b");
    init_node_dir(&b_dir, &test_config()).expect("init");
    let b = start_node(&b_dir, &entry).expect("b");

    let payload = test_bytes(6 * 1024 * 1024, 5);
    let file = root.path().join("payload.bin");
    std::fs::write(&file, &payload).expect("write payload");
    let hash = add_file(&a.info.api_url, &file);

    let url = format!("{}/blob/{hash}", b.info.api_url);
    let api = b.info.api_url.clone();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let read = |first_seen: bool| {
        let (url, api) = (url.clone(), api.clone());
        async move {
            let client = streamgate_tests::http_client();
            let response = client.get(&url).send().await.expect("request");
            assert_eq!(response.status().as_u16(), 200);
            let mut body = response.bytes_stream();
            let mut received = body
                .next()
                .await
                .expect("a first chunk")
                .expect("bytes")
                .to_vec();
            // The first bytes are here while the fetch is still running.
            let status: streamgate_tests::NodeStatus = client
                .get(format!("{api}/api/v1/status"))
                .send()
                .await
                .expect("status")
                .json()
                .await
                .expect("status JSON");
            if first_seen {
                assert_eq!(
                    (status.fetch.in_flight, status.fetch.completed),
                    (1, 0),
                    "the first bytes waited for the whole blob"
                );
            }
            while let Some(chunk) = body.next().await {
                received.extend_from_slice(&chunk.expect("body"));
            }
            received
        }
    };
    let (first, second) = runtime.block_on(async { tokio::join!(read(true), read(false)) });
    assert!(first == payload, "the first reader got other bytes");
    assert!(second == payload, "the second reader got other bytes");
    // The fetch is counted complete once its last bytes are committed, which may come just
    // after the readers have them.
    let mut s = status(&b.info.api_url).expect("status");
    wait_until(Duration::from_secs(10), || {
        s = status(&b.info.api_url).expect("status");
        s.fetch.completed + s.fetch.failed > 0 && s.fetch.in_flight == 0
    });
    assert_eq!(
        (s.fetch.completed, s.fetch.failed),
        (1, 0),
        "two readers, one fetch"
    );
    assert_eq!(s.blobs, 1, "the blob is stored");
}

/// The bootstrap's operator caps the nodes its relay serves: a node beyond the cap is
/// refused with the reason, the ones admitted keep their relay.
#[test]
fn a_full_relay_refuses_further_nodes_with_a_reason() {
    let root = tempfile::tempdir().expect("tempdir");
    let bootstrap = start_bootstrap_listening(
        &root.path().join("bootstrap"),
        LOOPBACK_LISTEN,
        "127.0.0.1:0",
        "127.0.0.1:0",
        &["--relay-max-nodes", "1"],
    )
    .expect("bootstrap");
    let entry = vec![bootstrap.info.listen_addrs[0].clone()];
    let start = |name: &str| {
        let dir = root.path().join(name);
        init_node_dir(&dir, &test_config()).expect("init");
        start_node(&dir, &entry).expect("start node")
    };
    let first = start("first");
    assert!(
        wait_until(Duration::from_secs(20), || status(&first.info.api_url)
            .is_ok_and(|s| s.reachability.relay_url.is_some())),
        "the first node never adopted the relay:\n{}",
        first.log()
    );
    let _second = start("second");
    assert!(
        wait_until(Duration::from_secs(20), || bootstrap.log().contains(
            "relay refused a connection: relay full: 1 nodes connected"
        )),
        "the relay admitted a second node beyond --relay-max-nodes 1:\n{}",
        bootstrap.log()
    );
}
