//! Publishing end to end: a creator publishes on one node; any node serves HLS and DASH
//! that FFmpeg decodes cleanly.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use streamgate_tests::{
    add_file, cli, http_client, init_node_dir, jobs, liar_config,
    media::{
        decode_errors, ffmpeg, make_clip, segment_starts_with_keyframe, stream_duration,
        video_frames,
    },
    operator_token, provider_standing, publish, start_bootstrap, start_node, status, streamgate,
    test_config, wait_until,
};

fn get_bytes(url: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let response = http_client().get(url).send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (
            status,
            headers,
            response.bytes().await.expect("body").to_vec(),
        )
    })
}

/// `streamgate --json publish FILE` in the background, resume state in `state`.
fn spawn_publish(
    api: &str,
    clip: &std::path::Path,
    state: &std::path::Path,
) -> std::process::Child {
    streamgate(api)
        .env("STREAMGATE_STATE_DIR", state)
        .args(["--json", "publish"])
        .arg(clip)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn publish")
}

/// `GET /api/v1/jobs`, or null while the node does not answer.
/// Seconds of video the first job has encoded so far (its first track).
fn encoded_secs(api: &str) -> f64 {
    jobs(api)[0]["progress"]["tracks"][0]["seconds"]
        .as_f64()
        .unwrap_or(0.0)
}

/// GET `url`, keeping whatever body arrived: the status, the bytes, and whether the body
/// ended cleanly.
fn get_partial(url: &str) -> (u16, Vec<u8>, bool) {
    use futures::StreamExt;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let response = http_client().get(url).send().await.expect("request");
        let status = response.status().as_u16();
        let mut body = response.bytes_stream();
        let mut received = Vec::new();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => received.extend_from_slice(&bytes),
                Err(_) => return (status, received, false),
            }
        }
        (status, received, true)
    })
}

fn manifest_json(api: &str, id: &str) -> Value {
    let out = cli(api, &["--json", "info", id]);
    assert!(
        out.status.success(),
        "info failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("info JSON")
}

#[test]
fn a_clip_published_on_one_node_decodes_cleanly_from_another_as_hls_and_dash() {
    let root = tempfile::tempdir().expect("tempdir");
    let bootstrap = start_bootstrap(&root.path().join("bootstrap")).expect("bootstrap");
    let entry = vec![bootstrap.info.listen_addrs[0].clone()];
    let mut nodes = Vec::new();
    for name in ["a", "b"] {
        let dir = root.path().join(name);
        init_node_dir(&dir, &test_config()).expect("init");
        nodes.push(start_node(&dir, &entry).expect("node"));
    }
    let (a, b) = (&nodes[0], &nodes[1]);
    let clip = root.path().join("clip.mp4");
    make_clip(&clip, 12, "1280x720", 30, true).expect("clip");
    let published = publish(
        &a.info.api_url,
        &clip,
        &["--title", "Tone and bars"],
        &root.path().join("state"),
    )
    .unwrap_or_else(|e| panic!("publish failed: {e}\n{}", a.log()));
    let id = published.manifest_id.clone();
    assert_eq!(
        Some(published.source_hash.as_str()),
        Some(
            blake3::hash(&std::fs::read(&clip).expect("clip"))
                .to_hex()
                .as_str()
        ),
        "the node did not receive the file intact"
    );

    // Node B never saw the video: everything below is fetched through the swarm.
    let base = format!("{}/hls/{id}", b.info.api_url);
    let errors = decode_errors(&format!("{base}/master.m3u8"), &[])
        .unwrap_or_else(|e| panic!("{e}\nnode B log:\n{}", b.log()));
    assert!(errors.is_empty(), "HLS decode errors: {errors}");
    let manifest = manifest_json(&b.info.api_url, &id);
    let tracks = manifest["manifest"]["tracks"]
        .as_array()
        .expect("tracks")
        .clone();
    let video: Vec<&Value> = tracks.iter().filter(|t| t["kind"] == "video").collect();
    assert_eq!(
        video
            .iter()
            .map(|t| t["id"].as_str().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["720p", "480p", "360p"],
        "the ladder is never above the source"
    );
    let scratch = root.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("mkdir");
    for track in video {
        let name = track["id"].as_str().expect("id");
        let playlist = format!("{base}/{name}/index.m3u8");
        let frames = video_frames(&playlist, &[]).expect("frames");
        assert_eq!(
            frames.len(),
            360,
            "{name}: frame count differs from the source"
        );
        assert!(
            frames.iter().all(|f| f.pict_type != "B"),
            "{name} has B-frames"
        );
        let duration = stream_duration(&playlist, "v", &[]).expect("duration");
        assert!(
            (duration - 12.0).abs() <= 1.0 / 30.0 + 1e-6,
            "{name}: duration {duration}"
        );
        let (code, headers, init) = get_bytes(&format!("{base}/{name}/init.mp4"));
        assert_eq!(code, 200);
        assert_eq!(headers["content-type"], "video/mp4");
        let segments = track["segments"].as_array().expect("segments").len();
        assert_eq!(segments, 6, "{name}: 2 s segments");
        for i in 0..segments {
            let (code, headers, segment) = get_bytes(&format!("{base}/{name}/seg_{i}.m4s"));
            assert_eq!(code, 200);
            assert_eq!(
                headers["cache-control"],
                "public, max-age=31536000, immutable"
            );
            assert_eq!(headers["access-control-allow-origin"], "*");
            assert!(
                segment_starts_with_keyframe(&init, &segment, &scratch).expect("probe"),
                "{name} segment {i} does not start with a keyframe"
            );
        }
    }
    let (code, headers, master) = get_bytes(&format!("{base}/master.m3u8"));
    assert_eq!(code, 200);
    assert_eq!(headers["content-type"], "application/vnd.apple.mpegurl");
    let master = String::from_utf8(master).expect("utf-8");
    assert!(
        master.contains("RESOLUTION=1280x720,FRAME-RATE=30.000"),
        "{master}"
    );
    assert!(master.contains("CODECS=\"avc1."), "{master}");

    // DASH from node B, decoded the same way.
    let mpd = format!("{}/dash/{id}/manifest.mpd", b.info.api_url);
    let errors = decode_errors(&mpd, &[]).expect("decode DASH");
    assert!(errors.is_empty(), "DASH decode errors: {errors}");
    let out = Command::new("ffmpeg")
        .args([
            "-v", "error", "-i", &mpd, "-map", "0:v:0", "-f", "framecrc", "-",
        ])
        .output()
        .expect("ffmpeg");
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    assert_eq!(frames, 360, "DASH frame count");
    let (code, headers, _) = get_bytes(&mpd);
    assert_eq!(
        (code, headers["content-type"].to_str().ok()),
        (200, Some("application/dash+xml"))
    );

    // A range of a segment.
    let (code, headers, part) = {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let r = http_client()
                .get(format!("{base}/360p/seg_0.m4s"))
                .header("Range", "bytes=0-99")
                .send()
                .await
                .expect("range request");
            (
                r.status().as_u16(),
                r.headers().clone(),
                r.bytes().await.expect("body"),
            )
        })
    };
    assert_eq!((code, part.len()), (206, 100));
    assert!(
        headers["content-range"]
            .to_str()
            .unwrap_or("")
            .starts_with("bytes 0-99/")
    );

    // A range from inside the largest segment, now hot on node B and big enough to be
    // kept sealed and sent with sendfile: the bytes match the whole segment's.
    let (track, index, size) = tracks
        .iter()
        .flat_map(|t| {
            let name = t["id"].as_str().unwrap_or("").to_string();
            let segments = t["segments"].as_array().cloned().unwrap_or_default();
            segments
                .into_iter()
                .enumerate()
                .map(move |(i, s)| (name.clone(), i, s["size"].as_u64().unwrap_or(0)))
        })
        .max_by_key(|(_, _, size)| *size)
        .expect("segments");
    assert!(size > 128 * 1024, "largest segment is only {size} bytes");
    let url = format!("{base}/{track}/seg_{index}.m4s");
    let (_, _, whole) = get_bytes(&url);
    let (code, part) = {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let r = http_client()
                .get(&url)
                .header("Range", format!("bytes=1000-{}", size - 1001))
                .send()
                .await
                .expect("range request");
            (r.status().as_u16(), r.bytes().await.expect("body"))
        })
    };
    assert_eq!(code, 206);
    assert!(
        part[..] == whole[1000..size as usize - 1000],
        "range bytes differ"
    );
    let (_, _, status) = get_bytes(&format!("{}/api/v1/status", b.info.api_url));
    let status: streamgate_tests::NodeStatus =
        serde_json::from_slice(&status).expect("status JSON");
    assert!(
        status.bytes_sent_zero_copy >= size - 2000,
        "node B sent no hot segment with sendfile: {status:?}"
    );

    // Both nodes list it; only A published it.
    let list = |api: &str| -> Value {
        serde_json::from_slice(&cli(api, &["--json", "ls"]).stdout).expect("ls JSON")
    };
    assert_eq!(list(&a.info.api_url)[0]["origin"], "published");
    assert_eq!(list(&b.info.api_url)[0]["id"], id.as_str());
}

#[test]
fn an_interrupted_upload_resumes_and_publishes_the_same_bytes() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("node");
    init_node_dir(&dir, &test_config()).expect("init");
    let node = start_node(&dir, &[]).expect("node");
    // A big (lightly compressed) clip, so the upload takes a while at the capped rate.
    let clip = root.path().join("big.mp4");
    let video = "testsrc2=size=1280x720:rate=30:duration=6";
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        video,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-qp",
        "4",
        clip.to_str().expect("utf-8"),
    ])
    .expect("clip");
    let length = std::fs::metadata(&clip).expect("clip").len();
    assert!(
        length > 8 * 1024 * 1024,
        "clip too small to interrupt: {length}"
    );
    let state = root.path().join("state");

    let mut first = streamgate(&node.info.api_url)
        .env("STREAMGATE_STATE_DIR", &state)
        .args(["--json", "publish", "--upload-rate", "4000000"])
        .arg(&clip)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn publish");
    // Kill the CLI once the node has some of the bytes.
    let upload_url = || -> Option<String> {
        let text = std::fs::read_to_string(state.join("uploads.json")).ok()?;
        let json: Value = serde_json::from_str(&text).ok()?;
        json["uploads"]
            .as_object()?
            .values()
            .next()?
            .as_str()
            .map(str::to_string)
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let token = operator_token(&node.info.api_url);
    let offset = |url: &str| -> u64 {
        runtime.block_on(async {
            http_client()
                .head(url)
                .bearer_auth(&token)
                .header("Tus-Resumable", "1.0.0")
                .send()
                .await
                .ok()
                .and_then(|r| {
                    r.headers()
                        .get("upload-offset")?
                        .to_str()
                        .ok()?
                        .parse()
                        .ok()
                })
                .unwrap_or(0)
        })
    };
    let started = wait_until(Duration::from_secs(30), || {
        upload_url().is_some_and(|u| offset(&u) >= length / 4)
    });
    assert!(started, "the upload never got a quarter through");
    first.kill().expect("kill the CLI");
    let _ = first.wait();
    let url = upload_url().expect("resume state kept");
    let kept = offset(&url);
    assert!(
        kept > 0 && kept < length,
        "the node kept {kept} of {length} bytes"
    );

    let second = publish(&node.info.api_url, &clip, &["--title", "resumed"], &state)
        .unwrap_or_else(|e| panic!("resumed publish failed: {e}\n{}", node.log()));
    let (resumed_from, sent) = (second.resumed_from, second.bytes_sent);
    assert!(
        resumed_from >= kept,
        "resumed from {resumed_from}, but the node had {kept}"
    );
    assert_eq!(
        resumed_from + sent,
        length,
        "bytes sent do not complete the file"
    );
    assert!(sent < length, "the second run sent everything again");
    assert_eq!(
        Some(second.source_hash.as_str()),
        Some(
            blake3::hash(&std::fs::read(&clip).expect("clip"))
                .to_hex()
                .as_str()
        ),
        "the resumed upload is not the same file"
    );
    let id = &second.manifest_id;
    let hls = format!("{}/hls/{id}/master.m3u8", node.info.api_url);
    assert!(decode_errors(&hls, &[]).expect("decode").is_empty());
}

#[test]
fn bad_files_fail_clearly_and_unusual_valid_ones_publish() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("node");
    init_node_dir(&dir, &test_config()).expect("init");
    let node = start_node(&dir, &[]).expect("node");
    let api = node.info.api_url.clone();
    let state = root.path().join("state");
    let path = |name: &str| root.path().join(name);

    // Bad: text named .mp4, empty, truncated (index at the end, and index first), unknown codec.
    std::fs::write(path("text.mp4"), "this is not a video\n".repeat(100)).expect("write");
    std::fs::write(path("empty.mp4"), b"").expect("write");
    make_clip(&path("good.mp4"), 12, "640x360", 30, true).expect("clip");
    let good = std::fs::read(path("good.mp4")).expect("read");
    std::fs::write(path("cut.mp4"), &good[..good.len() / 2]).expect("write");
    ffmpeg(&[
        "-i",
        path("good.mp4").to_str().expect("utf-8"),
        "-c",
        "copy",
        "-movflags",
        "+faststart",
        path("fast.mp4").to_str().expect("utf-8"),
    ])
    .expect("faststart");
    let fast = std::fs::read(path("fast.mp4")).expect("read");
    std::fs::write(path("fastcut.mp4"), &fast[..fast.len() / 2]).expect("write");
    ffmpeg(&[
        "-i",
        path("good.mp4").to_str().expect("utf-8"),
        "-c",
        "copy",
        path("good.mkv").to_str().expect("utf-8"),
    ])
    .expect("mkv");
    let mut mkv = std::fs::read(path("good.mkv")).expect("read");
    let at = mkv
        .windows(15)
        .position(|w| w == b"V_MPEG4/ISO/AVC")
        .expect("codec id in mkv");
    mkv[at..at + 15].copy_from_slice(b"V_XXXXX/ISO/AVC");
    std::fs::write(path("unknown.mkv"), mkv).expect("write");

    for (name, expect) in [
        ("text.mp4", "not a media file"),
        ("empty.mp4", "empty"),
        ("cut.mp4", "not a media file"),
        ("fastcut.mp4", "truncated"),
        ("unknown.mkv", "codec"),
    ] {
        let error = publish(&api, &path(name), &[], &state).expect_err(name);
        assert!(
            error.to_lowercase().contains(expect),
            "{name}: expected an error about {expect:?}, got: {error}"
        );
        assert_eq!(
            error.lines().count(),
            1,
            "{name}: error is not one line: {error}"
        );
    }
    let listed: Value = serde_json::from_slice(&cli(&api, &["--json", "ls"]).stdout).expect("ls");
    assert_eq!(
        listed,
        Value::Array(vec![]),
        "a failed publish announced something"
    );
    assert_eq!(
        status(&api).expect("status").blobs,
        0,
        "a failed publish recorded blobs"
    );

    // Unusual but valid: odd dimensions, audio only, video only.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=321x241:rate=25:duration=4",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv444p",
        path("odd.mp4").to_str().expect("utf-8"),
    ])
    .expect("odd clip");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=300:duration=5",
        "-c:a",
        "aac",
        path("audio.m4a").to_str().expect("utf-8"),
    ])
    .expect("audio clip");
    make_clip(&path("silent.mp4"), 4, "640x360", 30, false).expect("video-only clip");
    for (name, kinds) in [
        ("odd.mp4", vec!["video"]),
        ("audio.m4a", vec!["audio"]),
        ("silent.mp4", vec!["video"]),
    ] {
        let published = publish(&api, &path(name), &[], &state)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", node.log()));
        let id = published.manifest_id.as_str();
        let manifest = manifest_json(&api, id);
        let tracks = manifest["manifest"]["tracks"].as_array().expect("tracks");
        for kind in ["video", "audio"] {
            let has = tracks.iter().any(|t| t["kind"] == kind);
            assert_eq!(has, kinds.contains(&kind), "{name}: {kind} tracks");
        }
        for t in tracks.iter().filter(|t| t["kind"] == "video") {
            let (w, h) = (
                t["video"]["width"].as_u64().unwrap_or(1),
                t["video"]["height"].as_u64().unwrap_or(1),
            );
            assert_eq!((w % 2, h % 2), (0, 0), "{name}: odd output size {w}x{h}");
        }
        let hls = format!("{api}/hls/{id}/master.m3u8");
        let errors = decode_errors(&hls, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(errors.is_empty(), "{name}: {errors}");
    }
}

#[test]
fn a_tampered_manifest_and_segments_that_fail_their_hash_are_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let bootstrap = start_bootstrap(&root.path().join("bootstrap")).expect("bootstrap");
    let entry = vec![bootstrap.info.listen_addrs[0].clone()];
    // The publisher corrupts every blob stream it serves from byte 300 000 on: small blobs
    // (manifest, init segments) arrive intact, media segments do not.
    let a_dir = root.path().join("a");
    init_node_dir(&a_dir, &liar_config(300000)).expect("init");
    let a = start_node(&a_dir, &entry).expect("a");
    let b_dir = root.path().join("b");
    init_node_dir(&b_dir, &test_config()).expect("init");
    let b = start_node(&b_dir, &entry).expect("b");
    let clip = root.path().join("clip.mp4");
    make_clip(&clip, 6, "1280x720", 30, true).expect("clip");
    let published = publish(
        &a.info.api_url,
        &clip,
        &["--ladder", "720p"],
        &root.path().join("state"),
    )
    .expect("publish");
    let id = published.manifest_id.clone();

    // The manifest verifies on B, but no byte that fails its hash is ever served. B answers
    // with verified bytes as they arrive, so the first request is cut short where the bad
    // bytes begin; a client sees a failed transfer, never a whole response.
    let base = format!("{}/hls/{id}/720p", b.info.api_url);
    let (code, _, _) = get_bytes(&format!("{base}/index.m3u8"));
    assert_eq!(code, 200);
    let (code, _, truth) = get_bytes(&format!("{}/hls/{id}/720p/seg_0.m4s", a.info.api_url));
    assert_eq!(code, 200, "the publisher serves its own segment over HTTP");
    assert!(truth.len() > 300_000);
    let (code, received, complete) = get_partial(&format!("{base}/seg_0.m4s"));
    assert!(
        !(code == 200 && complete),
        "a segment failing its hash was served whole ({} bytes)",
        received.len()
    );
    assert!(
        truth.starts_with(&received) && received.len() <= 300_000,
        "B sent {} bytes that are not the verified start of the segment",
        received.len()
    );
    let s = status(&b.info.api_url).expect("status");
    let liar = provider_standing(&s, &a.info.peer_id).expect("publisher in B's provider book");
    assert!(liar.banned, "{liar:?}");
    // Asked again, B knows its only provider is banned and says so.
    let (code, _, body) = get_bytes(&format!("{base}/seg_0.m4s"));
    assert_eq!(code, 502, "{}", String::from_utf8_lossy(&body));
    let error: Value = serde_json::from_slice(&body).expect("JSON error");
    assert_eq!(error["error"], "providers_failed");
    assert!(
        error["message"].as_str().unwrap_or("").contains("banned"),
        "{error}"
    );

    // A manifest changed after signing is refused with its reason.
    let (code, _, original) = get_bytes(&format!("{}/blob/{id}", a.info.api_url));
    assert_eq!(code, 200);
    let mut tampered = original.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    let file = root.path().join("tampered.bin");
    std::fs::write(&file, &tampered).expect("write");
    let forged = add_file(&b.info.api_url, &file);
    let (code, _, body) = get_bytes(&format!("{}/hls/{forged}/master.m3u8", b.info.api_url));
    assert_eq!(code, 422, "{}", String::from_utf8_lossy(&body));
    let error: Value = serde_json::from_slice(&body).expect("JSON error");
    assert_eq!(error["error"], "invalid_manifest");
    let out = cli(&b.info.api_url, &["info", &forged]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid manifest"));
}

#[test]
fn a_node_restarted_mid_transcode_finishes_the_job_and_announces_only_complete_content() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("node");
    init_node_dir(&dir, &test_config()).expect("init");
    let mut node = start_node(&dir, &[]).expect("node");
    let clip = root.path().join("long.mp4");
    make_clip(&clip, 40, "1280x720", 30, true).expect("clip");
    let state = root.path().join("state");
    let mut cli_run = spawn_publish(&node.info.api_url, &clip, &state);
    let api = node.info.api_url.clone();
    let running = wait_until(Duration::from_secs(60), || {
        jobs(&api)[0]["state"] == "running"
    });
    assert!(running, "the job never started: {}", jobs(&api));
    // Kill it mid-transcode: once some seconds of video are encoded.
    let encoding = wait_until(Duration::from_secs(60), || encoded_secs(&api) >= 2.0);
    assert!(encoding, "the job never encoded anything: {}", jobs(&api));
    node.kill9();
    let _ = cli_run.wait();

    let node = start_node(&dir, &[]).expect("restart");
    let api = node.info.api_url.clone();
    // Until the job is done again, nothing is listed.
    let listed: Value = serde_json::from_slice(&cli(&api, &["--json", "ls"]).stdout).expect("ls");
    let done_already = jobs(&api)[0]["state"] == "done";
    if !done_already {
        assert_eq!(
            listed,
            Value::Array(vec![]),
            "a manifest was announced before its job finished"
        );
    }
    let finished = wait_until(Duration::from_secs(180), || {
        let state = jobs(&api)[0]["state"].clone();
        state == "done" || state == "failed"
    });
    assert!(
        finished,
        "the job did not finish after the restart:\n{}",
        node.log()
    );
    let job = jobs(&api)[0].clone();
    assert_eq!(job["state"], "done", "{job}");
    let id = job["manifest_id"].as_str().expect("id");
    let manifest = manifest_json(&api, id);
    let s = status(&api).expect("status");
    let blobs: usize = manifest["manifest"]["tracks"]
        .as_array()
        .expect("tracks")
        .iter()
        .map(|t| 1 + t["segments"].as_array().map_or(0, Vec::len))
        .sum();
    // Every segment and init segment, plus the manifest itself, is stored.
    assert_eq!(s.blobs, blobs as u64 + 1);
    let errors = decode_errors(&format!("{api}/hls/{id}/master.m3u8"), &[]).expect("decode");
    assert!(errors.is_empty(), "{errors}");
}

#[test]
fn a_cancelled_job_stops_mid_transcode_and_announces_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("node");
    init_node_dir(&dir, &test_config()).expect("init");
    let node = start_node(&dir, &[]).expect("node");
    let api = node.info.api_url.clone();
    let clip = root.path().join("long.mp4");
    make_clip(&clip, 40, "1280x720", 30, true).expect("clip");
    let state = root.path().join("state");
    let cli_run = spawn_publish(&api, &clip, &state);
    let encoding = wait_until(Duration::from_secs(60), || encoded_secs(&api) >= 1.0);
    assert!(encoding, "the job never started encoding: {}", jobs(&api));
    let job_id = jobs(&api)[0]["id"].as_str().expect("job id").to_string();

    let out = cli(&api, &["cancel", &job_id]);
    assert!(
        out.status.success(),
        "cancel failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cancelled = wait_until(Duration::from_secs(30), || {
        jobs(&api)[0]["state"] == "cancelled"
    });
    assert!(cancelled, "the job did not stop: {}", jobs(&api));
    let publish_out = cli_run.wait_with_output().expect("publish output");
    assert!(!publish_out.status.success());
    assert!(
        String::from_utf8_lossy(&publish_out.stderr).contains("cancelled"),
        "{}",
        String::from_utf8_lossy(&publish_out.stderr)
    );

    // Nothing was announced or recorded: no manifest, no provider entry, no blob row.
    let listed: Value = serde_json::from_slice(&cli(&api, &["--json", "ls"]).stdout).expect("ls");
    assert_eq!(
        listed,
        Value::Array(vec![]),
        "a cancelled job listed a manifest"
    );
    let s = status(&api).expect("status");
    assert_eq!(
        s.swarm.provided_keys, 0,
        "a cancelled job provided something"
    );
    assert_eq!(s.blobs, 0, "a cancelled job recorded blobs");
    // A job that has ended cannot be cancelled again.
    let again = cli(&api, &["cancel", &job_id]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("HTTP 409"));
}
