//! Test harness: starts real StreamGate processes on loopback and talks to them.
//!
//! Every process gets its own data folder, binds port 0 on 127.0.0.1, and is killed when
//! its handle drops, so a failing test leaves nothing running.

pub mod bench;
pub mod browser;
pub mod chain;
pub mod home_network;
pub mod media;
pub mod netns;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
pub use streamgate_api::{
    cli::Published,
    config::{ChainConfig, NodeConfig},
    ready::{BootstrapReady, NodeReady, ReadyInfo},
    v1::{NodeStatus, PathKind, PeerPath, ProviderStanding, ReachMode, WorkerInfo},
};

/// Configuration for test nodes: loopback only, DHT server mode (loopback addresses are
/// never confirmed as reachable by AutoNAT), and short timeouts so failures show quickly.
pub fn test_config() -> NodeConfig {
    let mut config = NodeConfig::default();
    config.swarm.dht_mode = streamgate_api::config::DhtMode::Server;
    config.data_plane.bind = ([127, 0, 0, 1], 0).into();
    config.data_plane.idle_timeout_secs = 3;
    config.fetch.find_timeout_secs = 5;
    config.fetch.stall_timeout_secs = 3;
    config
}

/// Path of a workspace binary, built by `cargo build --workspace --bins` (as `make test` does).
pub fn bin(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps, bench binaries in target/<profile>;
    // the workspace binaries are in target/<profile>.
    let exe = std::env::current_exe().expect("executable path");
    let candidates = exe.ancestors().skip(1).take(2);
    for dir in candidates {
        let path = dir.join(name);
        if path.exists() {
            return path;
        }
    }
    panic!(
        "{name} is missing beside {}: run `cargo build --workspace --bins` first (make test does)",
        exe.display()
    );
}

/// A running daemon process.
#[derive(Debug)]
pub struct Daemon<I> {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub info: I,
}

impl<I> Drop for Daemon<I> {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl<I> Daemon<I> {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("daemon.log")).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and how long the process took to exit (panics after 10 s).
    pub fn terminate(&mut self) -> (Duration, std::process::ExitStatus) {
        let mut child = self.child.take().expect("daemon is running");
        let started = Instant::now();
        signal(child.id(), libc::SIGTERM);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (started.elapsed(), status);
            }
            if started.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("daemon did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Sends `sig` to the process `pid`, a child of ours.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: plain kill(2) on a child we own; no memory is involved.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

pub type Node = Daemon<NodeReady>;
pub type Bootstrap = Daemon<BootstrapReady>;

/// The test configuration for a node that flips one bit of every blob stream it serves,
/// at byte `offset`: a malicious or broken provider.
pub fn liar_config(offset: u64) -> NodeConfig {
    let mut config = test_config();
    config.testing.corrupt_served_byte_at = Some(offset);
    config
}

/// A fresh data folder holding an initialised node key and `config` (usually
/// [`test_config`], changed where a test needs to).
pub fn init_node_dir(dir: &Path, config: &NodeConfig) -> anyhow::Result<()> {
    init_key(dir, "streamgate-node")?;
    std::fs::write(dir.join("config.toml"), config.to_toml())?;
    Ok(())
}

/// `DAEMON init --data-dir DIR`.
fn init_key(dir: &Path, daemon: &str) -> anyhow::Result<()> {
    let out = Command::new(bin(daemon))
        .args(["init", "--data-dir"])
        .arg(dir)
        .output()?;
    if !out.status.success() {
        bail!(
            "{daemon} init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Starts `streamgate-node run` on an initialised folder and waits until it is ready.
pub fn start_node(dir: &Path, bootstrap: &[String]) -> anyhow::Result<Node> {
    start_node_listening(dir, bootstrap, LOOPBACK_LISTEN)
}

/// libp2p listen addresses on loopback, TCP and QUIC, ports picked by the system.
pub const LOOPBACK_LISTEN: &[&str] = &["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"];

/// [`start_node`] with libp2p listening on `listen`; the API still on 127.0.0.1.
pub fn start_node_listening(
    dir: &Path,
    bootstrap: &[String],
    listen: &[&str],
) -> anyhow::Result<Node> {
    let mut cmd = Command::new(bin("streamgate-node"));
    cmd.args(["run", "--data-dir"]).arg(dir);
    for addr in listen {
        cmd.args(["--listen", addr]);
    }
    cmd.args(["--api-listen", "127.0.0.1:0"]);
    for addr in bootstrap {
        cmd.args(["--bootstrap", addr]);
    }
    let node: Node = spawn_and_wait(cmd, dir)?;
    if let Ok(mut dirs) = NODE_DIRS.lock() {
        dirs.insert(node.info.api_url.clone(), dir.to_path_buf());
    }
    Ok(node)
}

/// Initialises and starts a bootstrap node in `dir`.
pub fn start_bootstrap(dir: &Path) -> anyhow::Result<Bootstrap> {
    start_bootstrap_listening(dir, LOOPBACK_LISTEN, "127.0.0.1:0", "127.0.0.1:0", &[])
}

/// [`start_bootstrap`] with libp2p listening on `listen`, the iroh relay on
/// `relay_listen`, its QUIC address discovery on `qad_listen`, and `extra` arguments.
pub fn start_bootstrap_listening(
    dir: &Path,
    listen: &[&str],
    relay_listen: &str,
    qad_listen: &str,
    extra: &[&str],
) -> anyhow::Result<Bootstrap> {
    init_key(dir, "streamgate-bootstrap")?;
    let mut cmd = Command::new(bin("streamgate-bootstrap"));
    cmd.args(["run", "--data-dir"]).arg(dir);
    for addr in listen {
        cmd.args(["--listen", addr]);
    }
    cmd.args(["--relay-listen", relay_listen])
        .args(["--qad-listen", qad_listen])
        .args(extra);
    spawn_and_wait(cmd, dir)
}

fn spawn_and_wait<I: ReadyInfo>(mut cmd: Command, dir: &Path) -> anyhow::Result<Daemon<I>> {
    let name = I::NAME;
    let _ = std::fs::remove_file(I::path(dir));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))?;
    let child = cmd
        .env(
            "RUST_LOG",
            std::env::var("STREAMGATE_TEST_LOG")
                .unwrap_or_else(|_| "warn,streamgate_node=info,streamgate_bootstrap=info".into()),
        )
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let mut daemon = Daemon {
        child: Some(child),
        data_dir: dir.to_path_buf(),
        info: (),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(info) = I::read(dir) {
            let child = daemon.child.take();
            return Ok(Daemon {
                child,
                data_dir: dir.to_path_buf(),
                info,
            });
        }
        if !daemon.is_running() {
            bail!("{name} exited before it was ready:\n{}", daemon.log());
        }
        if Instant::now() > deadline {
            bail!("{name} not ready within 30 s:\n{}", daemon.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The data folder of every node this process started, by API URL: the CLI helpers are
/// given a URL, and write commands need that node's operator token.
static NODE_DIRS: std::sync::Mutex<std::collections::BTreeMap<String, PathBuf>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn node_dir(api_url: &str) -> Option<PathBuf> {
    NODE_DIRS.lock().ok()?.get(api_url).cloned()
}

/// `streamgate --node API_URL`, with `--data-dir` of that node when this process started
/// it (so the CLI holds its operator token, as on the node's own machine).
pub fn streamgate(api_url: &str) -> Command {
    let mut cmd = Command::new(bin("streamgate"));
    cmd.arg("--node").arg(api_url);
    if let Some(dir) = node_dir(api_url) {
        cmd.env("STREAMGATE_DATA_DIR", dir);
    }
    cmd
}

/// The operator token of the node at `api_url`, which this process started, for direct
/// HTTP calls to write endpoints.
pub fn operator_token(api_url: &str) -> String {
    let dir = node_dir(api_url).expect("a node this test started");
    streamgate_api::ready::read_operator_token(&streamgate_api::ready::operator_token_path(&dir))
        .expect("operator token")
}

/// Runs the `streamgate` CLI against `api_url`.
pub fn cli(api_url: &str, args: &[&str]) -> Output {
    streamgate(api_url)
        .args(args)
        .output()
        .expect("run streamgate")
}

/// Runs `streamgate --node API --json publish FILE ARGS` with its resume state in
/// `state_dir`; what it printed, or the CLI's error line.
pub fn publish(
    api: &str,
    file: &Path,
    args: &[&str],
    state_dir: &Path,
) -> Result<Published, String> {
    let out = streamgate(api)
        .env("STREAMGATE_STATE_DIR", state_dir)
        .args(["--json", "publish"])
        .arg(file)
        .args(args)
        .output()
        .expect("run streamgate publish");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("bad JSON from publish: {e}"))
}

/// `GET /api/v1/jobs` on `api` with its operator token, as JSON (null when unreachable).
pub fn jobs(api: &str) -> serde_json::Value {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        match http_client()
            .get(format!("{api}/api/v1/jobs"))
            .bearer_auth(operator_token(api))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or(serde_json::Value::Null),
            Err(_) => serde_json::Value::Null,
        }
    })
}

/// Deterministic pseudo-random bytes (so failures reproduce).
pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = vec![0; len];
    rng.fill_bytes(&mut out);
    out
}

/// `GET /api/v1/status`, through the CLI.
pub fn status(api_url: &str) -> anyhow::Result<NodeStatus> {
    let out = cli(api_url, &["--json", "status"]);
    if !out.status.success() {
        bail!("status failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Raises this process's soft limit on open descriptors to the hard limit: floods of
/// connections need thousands.
pub fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid resource and a valid struct.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

/// An HTTP client for talking to nodes directly (the rustls provider must be chosen first,
/// as in the binaries).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// `streamgate add FILE` on the node at `api_url`, which must succeed; the hash it printed.
pub fn add_file(api_url: &str, file: &Path) -> String {
    let out = cli(api_url, &["add", file.to_str().expect("utf-8 path")]);
    assert!(
        out.status.success(),
        "add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// `streamgate get HASH -o OUT` on `node`, which must succeed; the bytes written.
pub fn get_file(node: &Node, hash: &str, out: &Path) -> Vec<u8> {
    let result = cli(
        &node.info.api_url,
        &["get", hash, "-o", out.to_str().expect("utf-8 path")],
    );
    assert!(
        result.status.success(),
        "get failed: {}\nnode log:\n{}",
        String::from_utf8_lossy(&result.stderr),
        node.log()
    );
    std::fs::read(out).expect("read the fetched file")
}

/// What `status` says of one provider's standing.
pub fn provider_standing(status: &NodeStatus, peer_id: &str) -> Option<ProviderStanding> {
    status
        .providers
        .iter()
        .find(|p| p.peer_id == peer_id)
        .cloned()
}
