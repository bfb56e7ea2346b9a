//! The one-command local network: `streamgate-testnet up`, `status`, `kill-node`, `down`,
//! and resuming on the same data folder.

use std::{
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use streamgate_tests::{bin, http_client, media::decode_errors, wait_until};

/// Ports no other test uses (they all bind port 0).
const ANVIL_PORT: &str = "28545";
const BOOTSTRAP_PORT: &str = "24001";
const API_PORT: u16 = 27701;

fn testnet(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("streamgate-testnet"))
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .expect("run streamgate-testnet")
}

/// The `up` process; stopped (SIGTERM, which stops its whole network) when dropped, so a
/// failing test leaves nothing running.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            // SAFETY: plain kill(2) on our own child.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(self.0.id() as i32, libc::SIGTERM);
            }
            let _ = self.0.wait();
        }
    }
}

fn up(data: &Path) -> Up {
    let log = std::fs::File::create(data.with_extension("up.log")).expect("log");
    Command::new(bin("streamgate-testnet"))
        .args([
            "up",
            "--nodes",
            "3",
            "--anvil-port",
            ANVIL_PORT,
            "--bootstrap-port",
            BOOTSTRAP_PORT,
        ])
        .args(["--api-port", &API_PORT.to_string()])
        .arg("--data")
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .map(Up)
        .expect("start up")
}

fn wait_ready(data: &Path, up: &mut Up) -> Value {
    let up = &mut up.0;
    let ready = wait_until(Duration::from_secs(300), || {
        if up.try_wait().ok().flatten().is_some() {
            return true;
        }
        testnet(data, &["status", "--json"]).status.success()
    });
    let log = std::fs::read_to_string(data.with_extension("up.log")).unwrap_or_default();
    assert!(
        ready && up.try_wait().ok().flatten().is_none(),
        "the testnet did not become ready:\n{log}"
    );
    serde_json::from_slice(&testnet(data, &["status", "--json"]).stdout).expect("status JSON")
}

fn api(k: u16) -> String {
    format!("http://127.0.0.1:{}", API_PORT + k - 1)
}

fn sign_in(node_api: &str, key: &str) -> String {
    let out = Command::new(bin("streamgate"))
        .env("SG_KEY", key)
        .args(["--node", node_api, "sign-in", "--private-key-env", "SG_KEY"])
        .output()
        .expect("sign-in");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn key_status(node_api: &str, id: &str, token: &str) -> u16 {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        http_client()
            .get(format!("{node_api}/keys/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    })
}

#[test]
fn up_plays_public_and_gated_video_survives_a_killed_node_and_resumes_after_down() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("net");
    let mut first = up(&data);
    let status = wait_ready(&data, &mut first);
    let public = status["videos"]["public"]
        .as_str()
        .expect("public id")
        .to_string();
    let gated = status["videos"]["gated"]
        .as_str()
        .expect("gated id")
        .to_string();
    let chain = status["chain"].clone();

    // Node 2 did not publish: the public video decodes from it with no errors.
    let errors =
        decode_errors(&format!("{}/hls/{public}/master.m3u8", api(2)), &[]).expect("decode public");
    assert!(errors.is_empty(), "{errors}");
    // A development key with a pass plays the gated video; one without is refused.
    let accounts = status["accounts"].as_array().expect("accounts").clone();
    let holder = accounts
        .iter()
        .find(|a| a["has_pass"] == true)
        .expect("a holder");
    let stranger = accounts
        .iter()
        .find(|a| a["has_pass"] == false && a["index"] != 0)
        .expect("a stranger");
    let token = sign_in(&api(2), holder["private_key"].as_str().expect("key"));
    let header = format!("Authorization: Bearer {token}\r\n");
    let errors = decode_errors(
        &format!("{}/hls/{gated}/master.m3u8", api(2)),
        &["-headers", &header],
    )
    .expect("decode gated");
    assert!(errors.is_empty(), "{errors}");
    let refused = sign_in(&api(2), stranger["private_key"].as_str().expect("key"));
    assert_eq!(key_status(&api(2), &gated, &refused), 403);

    // The publishing node dies; the video still plays from the others, which fetched it.
    let out = testnet(&data, &["kill-node", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for k in [2, 3] {
        let errors =
            decode_errors(&format!("{}/hls/{public}/master.m3u8", api(k)), &[]).expect("decode");
        assert!(errors.is_empty(), "node {k}: {errors}");
    }
    // restart-node brings it back.
    let out = testnet(&data, &["restart-node", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // down stops everything: no process, no listening port.
    let pids: Vec<u64> = status["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter_map(|p| p["pid"].as_u64())
        .collect();
    let out = testnet(&data, &["down"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = first.0.wait();
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} outlived down"
        );
    }
    for port in [
        ANVIL_PORT.parse().expect("port"),
        BOOTSTRAP_PORT.parse().expect("port"),
        API_PORT,
        API_PORT + 1,
        API_PORT + 2,
    ] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still listens after down"
        );
    }
    assert!(
        !testnet(&data, &["status"]).status.success(),
        "status says ready after down"
    );

    // A second up on the same folder reuses the chain state and the content.
    let mut second = up(&data);
    let again = wait_ready(&data, &mut second);
    assert_eq!(again["chain"], chain, "contracts were deployed again");
    assert_eq!(
        again["videos"]["public"],
        public.as_str(),
        "the demo was published again"
    );
    assert_eq!(again["videos"]["gated"], gated.as_str());
    let listed = Command::new(bin("streamgate"))
        .args(["--node", &api(1), "--json", "ls"])
        .output()
        .expect("ls");
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("ls JSON");
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(2),
        "node 1 holds exactly the two demo videos: {listed}"
    );
    let errors = decode_errors(&format!("{}/hls/{public}/master.m3u8", api(3)), &[])
        .expect("decode after resume");
    assert!(errors.is_empty(), "{errors}");
    assert!(testnet(&data, &["down"]).status.success());
    let _ = second.0.wait();
}

#[test]
fn up_fails_clearly_on_a_taken_port_an_incompatible_folder_and_a_missing_tool() {
    let root = tempfile::tempdir().expect("tempdir");
    let fails_with = |out: std::process::Output, expected: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "up succeeded");
        assert!(
            stderr.contains(expected),
            "wanted {expected:?} in:\n{stderr}"
        );
    };

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let data = root.path().join("taken");
    fails_with(
        testnet(&data, &["up", "--anvil-port", &port]),
        &format!("port {port} is already taken (needed for anvil)"),
    );

    let data = root.path().join("old");
    std::fs::create_dir_all(&data).expect("mkdir");
    let state = data.join("testnet.json");
    std::fs::write(&state, r#"{"format": 999}"#).expect("write");
    fails_with(
        testnet(&data, &["up"]),
        "is a data folder from an incompatible version",
    );
    assert_eq!(
        std::fs::read_to_string(&state).expect("read"),
        r#"{"format": 999}"#,
        "the old folder was changed"
    );

    // A copy of the binary with no tools folder above it and no anvil on PATH.
    let lonely = root.path().join("bin/streamgate-testnet");
    std::fs::create_dir_all(root.path().join("bin")).expect("mkdir");
    std::fs::copy(bin("streamgate-testnet"), &lonely).expect("copy");
    let out = Command::new(&lonely)
        .args(["up", "--data"])
        .arg(root.path().join("fresh"))
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("run the copy");
    fails_with(out, "anvil is missing: run `make setup`");
    drop(taken);
}

/// Every process whose command line names `path`.
fn processes_naming(path: &Path) -> Vec<(u32, String)> {
    let needle = path.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let raw = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            cmdline.contains(&needle).then_some((pid, cmdline))
        })
        .collect()
}

#[test]
fn ctrl_c_mid_publish_stops_every_process_up_started() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("net");
    std::fs::create_dir_all(&data).expect("mkdir");
    let log_path = data.with_extension("up.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut up = Command::new(bin("streamgate-testnet"))
        .args(["up", "--nodes", "1", "--anvil-port", "38545"])
        .args(["--bootstrap-port", "34001", "--api-port", "37701"])
        .arg("--data")
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .map(Up)
        .expect("start up");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let publishing = wait_until(Duration::from_secs(300), || {
        log().contains("publishing the demo video")
    });
    assert!(publishing, "up never started publishing:\n{}", log());
    assert!(
        !processes_naming(&data).is_empty(),
        "nothing runs for this network"
    );

    // SAFETY: plain kill(2) on our own child.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(up.0.id() as i32, libc::SIGINT);
    }
    let exited = wait_until(Duration::from_secs(60), || {
        up.0.try_wait().ok().flatten().is_some()
    });
    assert!(exited, "up did not stop on Ctrl-C:\n{}", log());
    let status = up.0.wait().expect("status");
    assert!(
        !status.success(),
        "an interrupted start-up reported success"
    );
    assert!(log().contains("interrupted during start-up"), "{}", log());
    let left = processes_naming(&data);
    assert!(left.is_empty(), "processes outlived up: {left:?}");
    for port in [38545, 34001, 37701] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still listens"
        );
    }
}
