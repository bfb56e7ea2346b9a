//! Restarts: a clean restart keeps everything; `kill -9` in the middle of an add never
//! leaves a blob that is served as complete but wrong.

use std::{process::Stdio, time::Duration};

use streamgate_tests::{
    add_file, get_file, http_client, init_node_dir, start_bootstrap, start_node, status,
    streamgate, test_bytes, test_config,
};

#[test]
fn identity_blobs_and_state_survive_a_restart() {
    let root = tempfile::tempdir().expect("tempdir");
    let bootstrap = start_bootstrap(&root.path().join("bootstrap")).expect("bootstrap");
    let entry = vec![bootstrap.info.listen_addrs[0].clone()];
    let dir = root.path().join("node");
    init_node_dir(&dir, &test_config()).expect("init");
    let mut node = start_node(&dir, &entry).expect("start");
    let peer_id = node.info.peer_id.clone();

    let payload = test_bytes(2 * 1024 * 1024 + 3, 4);
    let file = root.path().join("payload.bin");
    std::fs::write(&file, &payload).expect("write");
    let hash = add_file(&node.info.api_url, &file);

    let (took, code) = node.terminate();
    assert!(code.success(), "{}", node.log());
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");

    let node = start_node(&dir, &entry).expect("restart");
    assert_eq!(
        node.info.peer_id, peer_id,
        "identity changed across restart"
    );
    let s = status(&node.info.api_url).expect("status");
    assert_eq!(s.blobs, 1);
    assert_eq!(s.bytes_stored, payload.len() as u64);
    let back = root.path().join("back.bin");
    assert_eq!(
        get_file(&node, &hash, &back),
        payload,
        "fetched bytes differ"
    );

    // The restarted node announced itself again: a newcomer finds and fetches from it.
    let newcomer_dir = root.path().join("newcomer");
    init_node_dir(&newcomer_dir, &test_config()).expect("init");
    let newcomer = start_node(&newcomer_dir, &entry).expect("newcomer");
    let fetched = root.path().join("fetched.bin");
    assert_eq!(
        get_file(&newcomer, &hash, &fetched),
        payload,
        "fetched bytes differ"
    );
}

#[test]
fn kill_9_during_add_never_leaves_a_wrong_blob_served_as_complete() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("node");
    // A lone node: anything it cannot find locally is "not found" after the find timeout.
    init_node_dir(&dir, &test_config()).expect("init");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = http_client();
    let mut outcomes = Vec::new();
    // Kill at several points of the upload and import, each time with new content so
    // that every kill meets a different stage of its own add.
    for (round, delay_ms) in [10u64, 40, 70, 100, 130, 170, 250].into_iter().enumerate() {
        let payload = test_bytes(64 * 1024 * 1024, 50 + round as u64);
        let file = root.path().join("payload.bin");
        std::fs::write(&file, &payload).expect("write");
        let hash = blake3::hash(&payload).to_hex().to_string();
        let stored_before = status_blobs_offline(&dir);
        let mut node = start_node(&dir, &[]).expect("start");
        let mut add = streamgate(&node.info.api_url)
            .arg("add")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn add");
        std::thread::sleep(Duration::from_millis(delay_ms));
        node.kill9();
        let _ = add.wait();

        let node = start_node(&dir, &[]).expect("restart after kill");
        let leftovers = std::fs::read_dir(dir.join("blobs/temp"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(
            leftovers, 0,
            "import leftovers not cleaned after kill at {delay_ms} ms"
        );
        let s = status(&node.info.api_url).expect("status");
        let url = format!("{}/blob/{hash}", node.info.api_url);
        let (code, body) = runtime.block_on(async {
            let response = client.get(&url).send().await.expect("request");
            let code = response.status().as_u16();
            (code, response.bytes().await.expect("body"))
        });
        match code {
            200 => {
                assert_eq!(
                    body.len(),
                    payload.len(),
                    "served a partial blob as complete"
                );
                assert_eq!(
                    blake3::hash(&body).to_hex().to_string(),
                    hash,
                    "served wrong bytes"
                );
                assert_eq!(s.blobs, stored_before + 1);
                outcomes.push("complete");
            }
            404 => {
                assert_eq!(
                    s.blobs, stored_before,
                    "database lists a blob the store cannot serve"
                );
                outcomes.push("absent");
            }
            other => panic!("unexpected status {other} after kill at {delay_ms} ms: {body:?}"),
        }
    }
    eprintln!("outcomes by kill time: {outcomes:?}");
}

/// Blobs the node at `dir` had stored when last stopped (read by starting it briefly).
fn status_blobs_offline(dir: &std::path::Path) -> u64 {
    let mut node = start_node(dir, &[]).expect("start");
    let blobs = status(&node.info.api_url).expect("status").blobs;
    node.terminate();
    blobs
}
