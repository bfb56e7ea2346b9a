//! Volunteered workers: a node started with `[worker] enabled` is known, with what its
//! probe opened and what it asks, to another node that shares only the bootstrap; a
//! publisher hands them chunks of a video, verifies what they return, and publishes a
//! video that decodes whole from another node, whoever cheated or died on the way. (What
//! hostile adverts meet is in `bad_input.rs`.)

use std::{collections::HashSet, path::Path, time::Duration};

use streamgate_api::{
    config::NodeConfig,
    v1::{ManifestView, SegmentReported},
};
use streamgate_protocol::job::SignedReceipt;
use streamgate_tests::{
    Node, WorkerInfo,
    browser::play_hls_rungs,
    cli, http_client, init_node_dir, jobs,
    media::{decode_errors, make_clip, segment_starts_with_keyframe, video_frames},
    publish, start_bootstrap, start_node, test_config, wait_until,
};

/// A worker's configuration: `cheat` makes it dishonest in the named way.
fn worker_config(cheat: Option<&str>) -> NodeConfig {
    let mut config = test_config();
    config.worker.enabled = true;
    config.testing.worker_cheat = cheat.map(str::to_string);
    config
}

/// Starts one node per configuration in `root/<name>`, at a lower CPU priority (as a
/// volunteer would run them), so that their transcoding does not starve the tests that run
/// beside these and wait for answers in time.
fn start_all(root: &Path, entry: &[String], nodes: &[(&str, NodeConfig)]) -> Vec<Node> {
    nodes
        .iter()
        .map(|(name, config)| {
            let dir = root.join(name);
            init_node_dir(&dir, config).expect("init");
            let node = start_node(&dir, entry).expect("node");
            if let Some(child) = &node.child {
                lower_priority(child.id());
            }
            node
        })
        .collect()
}

/// Nice 10 for every thread of `pid` (threads they start later inherit it).
fn lower_priority(pid: u32) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.flatten() {
        if let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        {
            // SAFETY: setpriority takes plain integers; a thread that is gone is an error
            // we ignore.
            #[allow(unsafe_code)]
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, tid, 10);
            }
        }
    }
}

/// Waits until `publisher` knows `n` workers.
fn wait_for_workers(publisher: &Node, n: usize) {
    assert!(
        wait_until(Duration::from_secs(60), || workers(&publisher.info.api_url)
            .len()
            >= n),
        "the publisher did not hear of {n} workers:\n{}",
        publisher.log()
    );
}

/// The chunks of the only job on `api`: (worker, state) each.
fn chunks(api: &str) -> Vec<(String, String)> {
    let jobs = jobs(api);
    let job = &jobs.as_array().expect("jobs")[0];
    job["chunks"]
        .as_array()
        .map(|chunks| {
            chunks
                .iter()
                .map(|c| {
                    (
                        c["worker"].as_str().unwrap_or("").to_string(),
                        c["state"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn get_bytes(url: &str) -> Vec<u8> {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let response = http_client().get(url).send().await.expect("request");
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        response.bytes().await.expect("body").to_vec()
    })
}

/// Every rung of `id`, read through `viewer` (a node that did not publish it), decodes
/// with no error, with `frames` frames, a keyframe first in every segment.
fn assert_decodes_whole(viewer: &Node, id: &str, rungs: &[&str], frames: usize, scratch: &Path) {
    let base = format!("{}/hls/{id}", viewer.info.api_url);
    let errors = decode_errors(&format!("{base}/master.m3u8"), &[])
        .unwrap_or_else(|e| panic!("{e}\n{}", viewer.log()));
    assert!(
        errors.is_empty(),
        "decoding the master printed errors: {errors}"
    );
    std::fs::create_dir_all(scratch).expect("mkdir");
    for rung in rungs {
        let playlist = format!("{base}/{rung}/index.m3u8");
        let decoded = video_frames(&playlist, &[]).expect("frames");
        assert_eq!(decoded.len(), frames, "{rung}: frames");
        let get = |name: &str| get_bytes(&format!("{base}/{rung}/{name}"));
        let init = get("init.mp4");
        for i in 0..frames.div_ceil(60) {
            let segment = get(&format!("seg_{i}.m4s"));
            assert!(
                segment_starts_with_keyframe(&init, &segment, scratch).expect("probe"),
                "{rung} segment {i} does not start with a keyframe"
            );
        }
    }
}

#[test]
fn three_workers_transcode_a_video_in_parallel_and_it_plays_whole_from_another_node() {
    let root = tempfile::tempdir().expect("tempdir");
    let bootstrap = start_bootstrap(&root.path().join("bootstrap")).expect("bootstrap");
    let entry = vec![bootstrap.info.listen_addrs[0].clone()];
    let nodes = start_all(
        root.path(),
        &entry,
        &[
            ("publisher", test_config()),
            ("w1", worker_config(None)),
            ("w2", worker_config(None)),
            ("w3", worker_config(None)),
        ],
    );
    let publisher = &nodes[0];
    wait_for_workers(publisher, 3);
    let clip = root.path().join("clip.mp4");
    make_clip(&clip, 30, "640x360", 30, true).expect("clip");
    let published = publish(
        &publisher.info.api_url,
        &clip,
        &["--ladder", "360p,240p"],
        &root.path().join("state"),
    )
    .unwrap_or_else(|e| panic!("publish: {e}\n{}", publisher.log()));
    let made = chunks(&publisher.info.api_url);
    assert_eq!(made.len(), 3, "30 s in chunks of 5 segments: {made:?}");
    assert!(
        made.iter().all(|(_, state)| state == "verified"),
        "{made:?}"
    );
    let by: HashSet<&str> = made.iter().map(|(w, _)| w.as_str()).collect();
    let worker_ids: HashSet<&str> = nodes[1..].iter().map(|n| n.info.peer_id.as_str()).collect();
    assert!(
        by.is_subset(&worker_ids),
        "only workers made chunks: {made:?}"
    );
    assert!(
        by.len() >= 2,
        "at least two workers did part of it: {made:?}"
    );
    // Node w3 serves the video it may have made only a part of.
    assert_decodes_whole(
        &nodes[3],
        &published.manifest_id,
        &["360p", "240p"],
        900,
        &root.path().join("scratch"),
    );
    // And in Chromium with hls.js: every rung plays across both chunk borders (10 s, 20 s).
    let viewer = &nodes[3].info.api_url;
    let played = play_hls_rungs(
        viewer,
        &format!("{viewer}/hls/{}/master.m3u8", published.manifest_id),
        &[10.0, 20.0],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let report = played["report"].as_array().expect("report");
    assert_eq!(report.len(), 4, "two rungs, two borders each: {played}");
    for entry in report {
        assert_eq!(entry["reached"], true, "{played}");
        assert_eq!(entry["videoHeight"], entry["height"], "{played}");
    }
    assert!(
        played["fatal"].as_array().is_some_and(Vec::is_empty),
        "{played}"
    );
    assert!(
        played["pageErrors"].as_array().is_some_and(Vec::is_empty),
        "{played}"
    );
    assert!(played["mediaError"].is_null(), "{played}");
    let known = workers(&publisher.info.api_url);
    for w in known.iter().filter(|w| by.contains(w.peer_id.as_str())) {
        let standing = w.standing.as_ref().expect("a standing once it had a job");
        assert!(standing.successes >= 1 && standing.failures == 0, "{w:?}");
    }

    // The manifest, as another node reads it, records who made each run of segments.
    let view: ManifestView = serde_json::from_slice(&get_bytes(&format!(
        "{viewer}/api/v1/manifests/{}",
        published.manifest_id
    )))
    .expect("manifest JSON");
    let work = &view.manifest.work;
    let runs: Vec<(u32, u32)> = work.iter().map(|w| (w.first_segment, w.segments)).collect();
    assert_eq!(runs, [(0, 5), (5, 5), (10, 5)], "{work:?}");
    // A bad segment found later, on that node, is traced through the receipt its maker
    // signed (fetched from the swarm) to its maker, whose standing there drops: segment 7
    // is in the second chunk.
    let out = cli(
        viewer,
        &[
            "--json",
            "report",
            &published.manifest_id,
            "7",
            "--reason",
            "green blocks",
        ],
    );
    assert!(out.status.success(), "report: {out:?}");
    let reported: SegmentReported = serde_json::from_slice(&out.stdout).expect("report JSON");
    assert_eq!(reported.worker, made[1].0, "{reported:?} {made:?}");
    assert_eq!((reported.first_segment, reported.segments), (5, 5));
    assert_eq!(reported.receipt, work[1].receipt.hash);
    let standing = reported.standing.expect("a standing");
    assert!(standing.corrupt >= 1 && standing.banned, "{standing:?}");
    let receipt = get_bytes(&format!("{viewer}/blob/{}", reported.receipt));
    let receipt = SignedReceipt::decode_signed(&receipt).expect("a receipt its worker signed");
    assert_eq!(receipt.receipt.worker, work[1].worker);
    // A reason that would reach the log raw is refused, and nothing is penalised.
    let out = cli(
        viewer,
        &[
            "report",
            &published.manifest_id,
            "0",
            "--reason",
            "\u{1b}[2Jgone",
        ],
    );
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("printable"),
        "{out:?}"
    );
    // A segment past the end is no one's.
    let out = cli(
        viewer,
        &["report", &published.manifest_id, "15", "--reason", "x"],
    );
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no segment 15"),
        "{out:?}"
    );
}

#[test]
fn cheating_workers_are_caught_and_lowered_and_the_video_publishes_through_honest_work() {
    let root = tempfile::tempdir().expect("tempdir");
    let bootstrap = start_bootstrap(&root.path().join("bootstrap")).expect("bootstrap");
    let entry = vec![bootstrap.info.listen_addrs[0].clone()];
    let mut publisher_config = test_config();
    // One segment per chunk: six chunks, so every worker gets one in the first round.
    publisher_config.transcode.chunk_segments = 1;
    publisher_config.transcode.worker_job_timeout_secs = 15;
    let cheats = [
        "other_video",
        "drop_frame",
        "low_resolution",
        "silent",
        "wrong_receipt",
    ];
    let mut configs = vec![
        ("publisher", publisher_config),
        ("honest", worker_config(None)),
    ];
    for cheat in cheats {
        configs.push((cheat, worker_config(Some(cheat))));
    }
    let nodes = start_all(root.path(), &entry, &configs);
    let publisher = &nodes[0];
    wait_for_workers(publisher, 6);
    let clip = root.path().join("clip.mp4");
    make_clip(&clip, 12, "640x360", 30, false).expect("clip");
    let published = publish(
        &publisher.info.api_url,
        &clip,
        &["--ladder", "360p"],
        &root.path().join("state"),
    )
    .unwrap_or_else(|e| panic!("publish: {e}\n{}", publisher.log()));
    let made = chunks(&publisher.info.api_url);
    assert_eq!(made.len(), 6, "{made:?}");
    let honest = nodes[1].info.peer_id.as_str();
    for (worker, state) in &made {
        assert_eq!(state, "verified");
        assert!(
            worker == honest || worker == "local",
            "a chunk was kept from a cheater: {made:?}; workers: {:?}",
            configs
                .iter()
                .map(|(name, _)| *name)
                .zip(nodes.iter().map(|n| n.info.peer_id.as_str()))
                .collect::<Vec<_>>()
        );
    }
    let known = workers(&publisher.info.api_url);
    for (node, cheat) in nodes[2..].iter().zip(cheats) {
        let w = known
            .iter()
            .find(|w| w.peer_id == node.info.peer_id)
            .unwrap_or_else(|| panic!("{cheat}: not listed"));
        let standing = w
            .standing
            .as_ref()
            .unwrap_or_else(|| panic!("{cheat} was never given a job: {made:?}"));
        assert!(
            standing.failures >= 1 && standing.successes == 0 && standing.score < 0,
            "{cheat}: {standing:?}"
        );
        // Output that failed verification bans; a worker that never answered is only lowered.
        assert_eq!(standing.banned, cheat != "silent", "{cheat}: {standing:?}");
        // Caught for what it did, as the publisher's log says.
        let expected = match cheat {
            "other_video" => "does not match the source (SSIM",
            "low_resolution" => "scaled up from a lower resolution",
            "drop_frame" => "not continuous with the job's offset, or a frame missing",
            "silent" => "no answer before the deadline",
            _ => "is not what the receipt says",
        };
        let log = publisher.log();
        let reason = log
            .lines()
            .find(|l| l.contains("job failed") && l.contains(&w.node_id[..10]))
            .unwrap_or_else(|| panic!("{cheat}: no failure logged:\n{log}"));
        assert!(reason.contains(expected), "{cheat}: {reason}");
    }
    // The manifest credits the honest worker with exactly the chunks it made; of those the
    // publishing node made, no worker can be blamed.
    let view: ManifestView = serde_json::from_slice(&get_bytes(&format!(
        "{}/api/v1/manifests/{}",
        publisher.info.api_url, published.manifest_id
    )))
    .expect("manifest JSON");
    let credited: Vec<u32> = view.manifest.work.iter().map(|w| w.first_segment).collect();
    let by_honest: Vec<u32> = (0..6u32)
        .filter(|&i| made[i as usize].0 == honest)
        .collect();
    assert_eq!(credited, by_honest, "{made:?}");
    if let Some(local) = made.iter().position(|(w, _)| w == "local") {
        let out = cli(
            &publisher.info.api_url,
            &[
                "report",
                &published.manifest_id,
                &local.to_string(),
                "--reason",
                "x",
            ],
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("made by its publishing node"),
            "{out:?}"
        );
    }
    assert_decodes_whole(
        &nodes[1],
        &published.manifest_id,
        &["360p"],
        360,
        &root.path().join("scratch"),
    );
}

#[test]
fn a_worker_killed_in_the_middle_of_a_job_loses_it_and_the_video_is_complete() {
    let root = tempfile::tempdir().expect("tempdir");
    let bootstrap = start_bootstrap(&root.path().join("bootstrap")).expect("bootstrap");
    let entry = vec![bootstrap.info.listen_addrs[0].clone()];
    let mut nodes = start_all(
        root.path(),
        &entry,
        &[
            ("publisher", test_config()),
            ("doomed", worker_config(None)),
            ("survivor", worker_config(None)),
        ],
    );
    wait_for_workers(&nodes[0], 2);
    let clip = root.path().join("clip.mp4");
    make_clip(&clip, 20, "1280x720", 30, false).expect("clip");
    let api = nodes[0].info.api_url.clone();
    let doomed = nodes[1].info.peer_id.clone();
    let state = root.path().join("state");
    let publishing =
        std::thread::spawn(move || publish(&api, &clip, &["--ladder", "720p,360p"], &state));
    // Kill the doomed worker once it holds a chunk.
    let api = nodes[0].info.api_url.clone();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let jobs = jobs(&api);
            jobs[0]["progress"]["chunks"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["worker"] == doomed.as_str() && c["state"] == "running")
            })
        }),
        "the doomed worker never got a chunk:\n{}",
        nodes[0].log()
    );
    nodes[1].kill9();
    let published = publishing
        .join()
        .expect("publish thread")
        .unwrap_or_else(|e| panic!("publish: {e}\n{}", nodes[0].log()));
    let made = chunks(&nodes[0].info.api_url);
    assert!(
        made.iter().all(|(w, s)| s == "verified" && *w != doomed),
        "{made:?}"
    );
    assert_decodes_whole(
        &nodes[2],
        &published.manifest_id,
        &["720p", "360p"],
        600,
        &root.path().join("scratch"),
    );
}

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
    // The worker measured itself at start-up (1080p to 720p) and says so in a later advert.
    let mut measured = None;
    let heard = wait_until(Duration::from_secs(60), || {
        measured = workers(&publisher.info.api_url)
            .first()
            .and_then(|w| w.speed_fps);
        measured.is_some()
    });
    assert!(heard, "no measured speed in the adverts:\n{}", worker.log());
    assert!(measured.is_some_and(|fps| fps > 0.0), "{measured:?}");

    // The human-readable listing says the same.
    let text = cli(&publisher.info.api_url, &["workers"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&worker.info.peer_id) && text.contains("jobs 0/3"),
        "{text}"
    );
}
