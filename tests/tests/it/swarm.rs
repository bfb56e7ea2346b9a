//! Five nodes and a bootstrap node: content added on one is found and fetched by another.

use std::time::Duration;

use streamgate_tests::{
    add_file, get_file, init_node_dir, start_bootstrap, start_node, status, test_bytes, test_config,
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
