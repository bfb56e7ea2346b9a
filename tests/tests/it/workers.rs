//! Volunteered workers: a node started with `[worker] enabled` is known, with what its
//! probe opened and what it asks, to another node that shares only the bootstrap.
//! (Jobs are not built yet; what hostile adverts meet is in `bad_input.rs`.)

use std::time::Duration;

use streamgate_tests::{
    WorkerInfo, cli, init_node_dir, start_bootstrap, start_node, test_config, wait_until,
};

fn workers(api_url: &str) -> Vec<WorkerInfo> {
    let out = cli(api_url, &["--json", "workers"]);
    assert!(out.status.success(), "workers: {out:?}");
    serde_json::from_slice(&out.stdout).expect("workers JSON")
}

#[test]
fn a_volunteered_worker_is_known_across_the_swarm_with_its_claims() {
    let root = tempfile::tempdir().expect("tempdir");
    let bootstrap = start_bootstrap(&root.path().join("bootstrap")).expect("bootstrap");
    let entry = vec![bootstrap.info.listen_addrs[0].clone()];

    let mut worker_config = test_config();
    worker_config.worker.enabled = true;
    worker_config.worker.price_per_gigapixel = 250_000_000_000;
    worker_config.worker.max_jobs = 3;
    worker_config.worker.payment_address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into();
    let worker_dir = root.path().join("worker");
    init_node_dir(&worker_dir, &worker_config).expect("init");
    let worker = start_node(&worker_dir, &entry).expect("worker");

    let publisher_dir = root.path().join("publisher");
    init_node_dir(&publisher_dir, &test_config()).expect("init");
    let publisher = start_node(&publisher_dir, &entry).expect("publisher");
    // Not a worker itself, so the publisher never lists itself.

    let mut known = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            known = workers(&publisher.info.api_url);
            !known.is_empty()
        }),
        "the publisher never heard of the worker:\n{}",
        worker.log()
    );
    assert_eq!(known.len(), 1, "{known:?}");
    let w = &known[0];
    assert_eq!(w.peer_id, worker.info.peer_id);
    // What the probe really opened here: at least the software codecs, whatever GPU the
    // machine has.
    assert!(w.encoders.iter().any(|e| e == "libx264"), "{w:?}");
    assert!(w.decoders.iter().any(|d| d == "h264"), "{w:?}");
    assert!(
        ["cpu", "gpu", "gpu-decode-cpu-encode"].contains(&w.mode.as_str()),
        "{w:?}"
    );
    assert_eq!(w.price_per_gigapixel, "250000000000");
    assert_eq!((w.active_jobs, w.max_jobs), (0, 3));
    assert_eq!(
        w.payment_address.as_deref(),
        Some("0x70997970c51812dc3a010c7d01b50e0d17dc79c8")
    );
    assert!(w.expires_at > w.issued_at, "{w:?}");
    assert_eq!(
        w.speed_fps, None,
        "speed is not measured yet, and must not be claimed"
    );

    // The human-readable listing says the same.
    let text = cli(&publisher.info.api_url, &["workers"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&worker.info.peer_id) && text.contains("jobs 0/3"),
        "{text}"
    );
}
