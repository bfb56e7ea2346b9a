//! `streamgate-testnet up`: start or resume the network, then supervise it.

use std::{
    collections::HashMap,
    fs::OpenOptions,
    net::{TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use alloy::{
    network::EthereumWallet,
    primitives::Address,
    providers::{Provider, ProviderBuilder},
    signers::local::{MnemonicBuilder, PrivateKeySigner, coins_bip39::English},
};
use anyhow::{Context, anyhow, bail};
use streamgate_contracts::{ContentRegistry, StreamPass, StreamPass1155};

use crate::state::{ChainState, DevAccount, Ports, ProcessState, State, Videos, alive, signal};

/// anvil's well-known development mnemonic: its accounts are funded on every anvil chain.
const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";
const CHAIN_ID: u64 = 31337;
/// Development accounts 1 and 2 get a StreamPass; 3 and 4 do not; 0 deploys and publishes.
const PASS_HOLDERS: [usize; 2] = [1, 2];
const SHOWN_ACCOUNTS: usize = 5;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Folder for every process's data and logs; running `up` again on it resumes the network.
    #[arg(long, default_value = "./testnet-data")]
    data: PathBuf,
    /// Video to publish as the demo (default: a clip generated with FFmpeg).
    #[arg(long)]
    video: Option<PathBuf>,
    /// anvil's JSON-RPC port.
    #[arg(long, default_value_t = 8545)]
    anvil_port: u16,
    /// The bootstrap node's libp2p port (TCP and QUIC); its iroh relay uses the next port.
    #[arg(long, default_value_t = 4001)]
    bootstrap_port: u16,
    /// HTTP API port of node 1; node K uses this + K - 1.
    #[arg(long, default_value_t = 7701)]
    api_port: u16,
}

/// The binaries this one ships with.
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().map(|d| d.join(name)).unwrap_or_default();
    if !path.exists() {
        bail!(
            "{name} is missing beside {}: build with `cargo build --release --workspace --bins` (make demo does)",
            exe.display()
        );
    }
    Ok(path)
}

/// anvil from the project's tools folder (installed by scripts/setup.sh), else from PATH.
fn anvil_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors() {
        let candidate = dir.join(".tools/bin/anvil");
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    which("anvil").ok_or_else(|| {
        anyhow!("anvil is missing: run `make setup` (scripts/setup.sh installs it from npm)")
    })
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.exists())
}

fn check_port_free(port: u16, what: &str, flag: &str) -> anyhow::Result<()> {
    let tcp = TcpListener::bind(("127.0.0.1", port)).is_ok();
    let udp = UdpSocket::bind(("127.0.0.1", port)).is_ok();
    if !tcp || !udp {
        bail!(
            "port {port} is already taken (needed for {what}); stop whatever uses it or choose another with {flag}"
        );
    }
    Ok(())
}

pub fn node_api(ports: &Ports, k: usize) -> String {
    format!("http://127.0.0.1:{}", ports.first_api as usize + k - 1)
}

/// The URLs worth showing: every node's API, and HLS/DASH of both videos on every node.
pub fn urls(state: &State) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(chain) = &state.chain {
        out.push(("chain RPC".to_string(), chain.rpc_url.clone()));
    }
    for k in 1..=state.nodes {
        let api = node_api(&state.ports, k);
        out.push((format!("node-{k} API"), api.clone()));
        if let Some(v) = &state.videos {
            out.push((
                format!("node-{k} public HLS"),
                format!("{api}/hls/{}/master.m3u8", v.public),
            ));
            out.push((
                format!("node-{k} public DASH"),
                format!("{api}/dash/{}/manifest.mpd", v.public),
            ));
            out.push((
                format!("node-{k} gated HLS"),
                format!("{api}/hls/{}/master.m3u8", v.gated),
            ));
        }
    }
    out
}

/// The processes `up` started, by name.
struct Children {
    data: PathBuf,
    running: HashMap<String, Child>,
}

impl Children {
    fn log(&self, name: &str) -> PathBuf {
        self.data.join("logs").join(format!("{name}.log"))
    }

    fn spawn(&mut self, name: &str, command: &mut Command) -> anyhow::Result<u32> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(name))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let pid = child.id();
        self.running.insert(name.to_string(), child);
        Ok(pid)
    }

    /// SIGTERM, then SIGKILL after `grace`.
    async fn stop(&mut self, name: &str, grace: Duration) {
        let Some(mut child) = self.running.remove(name) else {
            return;
        };
        signal(child.id(), libc::SIGTERM);
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Children that exited on their own since the last call.
    fn reap(&mut self) -> Vec<(String, String)> {
        let mut gone = Vec::new();
        for (name, child) in &mut self.running {
            if let Ok(Some(status)) = child.try_wait() {
                gone.push((name.clone(), status.to_string()));
            }
        }
        for (name, _) in &gone {
            self.running.remove(name);
        }
        gone
    }
}

/// Waits for `DIR/run/<name>.json` and returns it.
async fn ready_file(
    dir: &Path,
    name: &str,
    children: &mut Children,
    process: &str,
) -> anyhow::Result<serde_json::Value> {
    let file = dir.join("run").join(format!("{name}.json"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(&file)
            && let Ok(value) = serde_json::from_str(&text)
        {
            return Ok(value);
        }
        if !children.running.contains_key(process) || !children.reap().is_empty() {
            bail!(
                "{process} exited during start-up; see {}",
                children.log(process).display()
            );
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{process} was not ready within 60 s; see {}",
                children.log(process).display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn dev_signer(index: usize) -> anyhow::Result<PrivateKeySigner> {
    Ok(MnemonicBuilder::<English>::default()
        .phrase(DEV_MNEMONIC)
        .index(index as u32)?
        .build()?)
}

pub async fn up(args: UpArgs) -> anyhow::Result<bool> {
    if args.nodes == 0 || args.nodes > 32 {
        bail!("--nodes must be between 1 and 32");
    }
    let data = args.data.clone();
    std::fs::create_dir_all(data.join("logs"))?;
    let data = std::fs::canonicalize(&data)?;
    let mut state = State::load(&data)?;
    if let Some(pid) = state
        .supervisor_pid
        .filter(|p| alive(*p) && *p != std::process::id())
    {
        bail!(
            "a testnet is already running on {} (pid {pid}); stop it with `streamgate-testnet down --data {}`",
            data.display(),
            data.display()
        );
    }
    // Tools and binaries first, so a missing one says what installs it before anything starts.
    let anvil = anvil_binary()?;
    let node_bin = sibling("streamgate-node")?;
    let bootstrap_bin = sibling("streamgate-bootstrap")?;
    let cli_bin = sibling("streamgate")?;
    if state.videos.is_none() && args.video.is_none() && which("ffmpeg").is_none() {
        bail!(
            "ffmpeg is missing (needed to make the demo clip): run `make setup`, or pass --video FILE"
        );
    }
    let ports = Ports {
        anvil: args.anvil_port,
        bootstrap: args.bootstrap_port,
        relay: args
            .bootstrap_port
            .checked_add(1)
            .ok_or_else(|| anyhow!("--bootstrap-port is too high"))?,
        first_api: args.api_port,
    };
    check_port_free(ports.anvil, "anvil", "--anvil-port")?;
    check_port_free(ports.bootstrap, "the bootstrap node", "--bootstrap-port")?;
    check_port_free(
        ports.relay,
        "the iroh relay (bootstrap port + 1)",
        "--bootstrap-port",
    )?;
    for k in 1..=args.nodes {
        check_port_free(
            ports.first_api + k as u16 - 1,
            &format!("node-{k}'s API"),
            "--api-port",
        )?;
    }
    state.supervisor_pid = Some(std::process::id());
    state.ready = false;
    state.nodes = args.nodes;
    state.ports = ports.clone();
    state.save(&data)?;

    let mut children = Children {
        data: data.clone(),
        running: HashMap::new(),
    };
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let started = tokio::select! {
        result = start(&args, &data, &mut state, &mut children, &anvil, &node_bin, &bootstrap_bin, &cli_bin) => result,
        _ = &mut shutdown => Err(anyhow!("interrupted during start-up")),
    };
    if let Err(e) = started {
        stop_all(&data, &mut state, &mut children).await;
        return Err(e);
    }
    state.ready = true;
    state.save(&data)?;
    print_summary(&state);

    // Supervise until told to stop.
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                for (name, status) in children.reap() {
                    println!("{name} exited ({status}); `streamgate-testnet restart-node` starts a node again");
                    if let Some(mut p) = state.process(&name).cloned() {
                        p.pid = None;
                        state.set_process(p);
                    }
                    state.save(&data)?;
                }
                for k in 1..=state.nodes {
                    let request = data.join("control").join(format!("restart-node-{k}"));
                    if request.exists() {
                        let name = format!("node-{k}");
                        children.stop(&name, Duration::from_secs(5)).await;
                        if let Err(e) = start_node(&data, &mut state, &mut children, &node_bin, k).await {
                            println!("cannot restart {name}: {e:#}");
                        } else {
                            println!("{name} restarted");
                        }
                        state.save(&data)?;
                        let _ = std::fs::remove_file(&request);
                    }
                }
            }
        }
    }
    println!("stopping the testnet");
    stop_all(&data, &mut state, &mut children).await;
    Ok(true)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

#[allow(clippy::too_many_arguments)]
async fn start(
    args: &UpArgs,
    data: &Path,
    state: &mut State,
    children: &mut Children,
    anvil: &Path,
    node_bin: &Path,
    bootstrap_bin: &Path,
    cli_bin: &Path,
) -> anyhow::Result<()> {
    // The chain, with its state kept in the data folder.
    std::fs::create_dir_all(data.join("chain"))?;
    println!("starting anvil on port {}", state.ports.anvil);
    let pid = children.spawn(
        "anvil",
        Command::new(anvil)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &state.ports.anvil.to_string(),
            ])
            .args(["--chain-id", &CHAIN_ID.to_string(), "--state-interval", "2"])
            .arg("--state")
            .arg(data.join("chain/state.json")),
    )?;
    let rpc_url = format!("http://127.0.0.1:{}", state.ports.anvil);
    state.set_process(ProcessState {
        name: "anvil".into(),
        pid: Some(pid),
        log: children.log("anvil"),
        api_url: None,
    });
    state.save(data)?;
    let deployer = dev_signer(0)?;
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(deployer.clone()))
        .connect_http(rpc_url.parse()?);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while provider.get_chain_id().await.is_err() {
        if tokio::time::Instant::now() > deadline || !children.reap().is_empty() {
            bail!(
                "anvil did not answer; see {}",
                children.log("anvil").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Contracts: deployed once, then reused (anvil's state file keeps them).
    let reuse = match &state.chain {
        Some(chain) => {
            let pass: Address = chain.pass.parse()?;
            !provider.get_code_at(pass).await?.is_empty()
        }
        None => false,
    };
    if reuse {
        println!("reusing the contracts deployed earlier");
    } else {
        println!("deploying contracts");
        let pass = StreamPass::deploy(&provider, deployer.address()).await?;
        let pass1155 = StreamPass1155::deploy(&provider, deployer.address()).await?;
        let registry = ContentRegistry::deploy(&provider).await?;
        for holder in PASS_HOLDERS {
            pass.mint(dev_signer(holder)?.address())
                .send()
                .await?
                .get_receipt()
                .await?;
        }
        state.chain = Some(ChainState {
            rpc_url: rpc_url.clone(),
            chain_id: CHAIN_ID,
            pass: pass.address().to_string(),
            pass1155: pass1155.address().to_string(),
            registry: registry.address().to_string(),
        });
        // A chain without its contracts means the videos gated on them are gone too.
        state.videos = None;
    }
    state.accounts = (0..SHOWN_ACCOUNTS)
        .map(|i| {
            let signer = dev_signer(i)?;
            Ok(DevAccount {
                index: i,
                address: signer.address().to_string(),
                private_key: format!("0x{}", hex::encode(signer.to_bytes())),
                has_pass: PASS_HOLDERS.contains(&i),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    state.save(data)?;

    // The bootstrap node.
    let dir = data.join("bootstrap");
    if !dir.join("node.key").exists() {
        init(bootstrap_bin, &dir)?;
    }
    let _ = std::fs::remove_file(dir.join("run/bootstrap.json"));
    println!(
        "starting the bootstrap node on port {}",
        state.ports.bootstrap
    );
    let port = state.ports.bootstrap.to_string();
    let pid = children.spawn(
        "bootstrap",
        Command::new(bootstrap_bin)
            .args(["run", "--data-dir"])
            .arg(&dir)
            .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{port}")])
            .args(["--listen", &format!("/ip4/127.0.0.1/udp/{port}/quic-v1")])
            .args([
                "--relay-listen",
                &format!("127.0.0.1:{}", state.ports.relay),
            ]),
    )?;
    state.set_process(ProcessState {
        name: "bootstrap".into(),
        pid: Some(pid),
        log: children.log("bootstrap"),
        api_url: None,
    });
    let ready = ready_file(&dir, "bootstrap", children, "bootstrap").await?;
    state.bootstrap_addr = ready["listen_addrs"][0].as_str().map(str::to_string);
    state.save(data)?;

    for k in 1..=args.nodes {
        start_node(data, state, children, node_bin, k).await?;
        println!("node-{k} is up at {}", node_api(&state.ports, k));
    }

    // The demo videos, published once through the real CLI path, then pinned everywhere.
    if state.videos.is_none() {
        let video = match &args.video {
            Some(v) => v.clone(),
            None => make_demo_clip(data)?,
        };
        let chain = state.chain.clone().ok_or_else(|| anyhow!("no chain"))?;
        let api = node_api(&state.ports, 1);
        println!("publishing the demo video (public)");
        let public = publish(cli_bin, &api, &video, data, &["--title", "StreamGate demo"])?;
        println!("publishing the demo video (gated on StreamPass)");
        let gate = format!("erc721:{}:{}", chain.chain_id, chain.pass);
        let registrant = deployer_address()?;
        let mut gated_args: Vec<String> = [
            "--title",
            "StreamGate demo (pass holders)",
            "--gate",
            &gate,
            "--registrant",
            &registrant,
        ]
        .map(String::from)
        .to_vec();
        // Every node can release the key, so a viewer signs in wherever they watch, and the
        // gated video keeps playing when the publishing node is gone.
        for k in 2..=args.nodes {
            gated_args.push("--key-server".into());
            gated_args.push(node_api(&state.ports, k));
        }
        let gated_args: Vec<&str> = gated_args.iter().map(String::as_str).collect();
        let gated = publish(cli_bin, &api, &video, data, &gated_args)?;
        state.videos = Some(Videos {
            public,
            gated,
            published_on: "node-1".into(),
        });
        state.save(data)?;
    }
    pin_everywhere(state).await
}

fn deployer_address() -> anyhow::Result<String> {
    Ok(dev_signer(0)?.address().to_string())
}

fn init(bin: &Path, dir: &Path) -> anyhow::Result<()> {
    let out = Command::new(bin)
        .args(["init", "--data-dir"])
        .arg(dir)
        .output()?;
    if !out.status.success() {
        bail!(
            "{} init failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Starts (or restarts) node `k` with a configuration written from the network's state.
async fn start_node(
    data: &Path,
    state: &mut State,
    children: &mut Children,
    node_bin: &Path,
    k: usize,
) -> anyhow::Result<()> {
    let name = format!("node-{k}");
    let dir = data.join(&name);
    if !dir.join("node.key").exists() {
        init(node_bin, &dir)?;
    }
    let chain = state.chain.clone().ok_or_else(|| anyhow!("no chain"))?;
    let api = node_api(&state.ports, k);
    let bootstrap = state
        .bootstrap_addr
        .clone()
        .ok_or_else(|| anyhow!("no bootstrap address"))?;
    let config = format!(
        "# Written by streamgate-testnet at every start; edit the testnet, not this file.\n\
         [swarm]\nlisten = [\"/ip4/127.0.0.1/tcp/0\", \"/ip4/127.0.0.1/udp/0/quic-v1\"]\n\
         bootstrap = [\"{bootstrap}\"]\ndht_mode = \"server\"\n\n\
         [data_plane]\nbind = \"127.0.0.1:0\"\nrelay_url = \"http://127.0.0.1:{relay}\"\nidle_timeout_secs = 3\n\n\
         [api]\nlisten = \"{listen}\"\n\n\
         [fetch]\nfind_timeout_secs = 5\nstall_timeout_secs = 3\n\n\
         [access]\npublic_origin = \"{api}\"\n\n\
         [[chains]]\nchain_id = {chain_id}\nrpc_urls = [\"{rpc}\"]\nregistry = \"{registry}\"\n",
        relay = state.ports.relay,
        listen = api.trim_start_matches("http://"),
        chain_id = chain.chain_id,
        rpc = chain.rpc_url,
        registry = chain.registry,
    );
    std::fs::write(dir.join("config.toml"), config)?;
    let _ = std::fs::remove_file(dir.join("run/node.json"));
    let pid = children.spawn(
        &name,
        Command::new(node_bin).args(["run", "--data-dir"]).arg(&dir),
    )?;
    state.set_process(ProcessState {
        name: name.clone(),
        pid: Some(pid),
        log: children.log(&name),
        api_url: Some(api),
    });
    ready_file(&dir, "node", children, &name).await?;
    Ok(())
}

fn make_demo_clip(data: &Path) -> anyhow::Result<PathBuf> {
    let clip = data.join("demo.mp4");
    if clip.exists() {
        return Ok(clip);
    }
    println!("making a 20 s demo clip with FFmpeg");
    let temp = data.join(".demo.mp4");
    let status = Command::new("ffmpeg")
        .args(["-y", "-v", "error", "-nostdin"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30:duration=20",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=20",
        ])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac",
        ])
        .arg(&temp)
        .status()
        .context("cannot run ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg could not make the demo clip");
    }
    std::fs::rename(&temp, &clip)?;
    Ok(clip)
}

fn publish(
    cli: &Path,
    api: &str,
    video: &Path,
    data: &Path,
    extra: &[&str],
) -> anyhow::Result<String> {
    let out = Command::new(cli)
        .env("STREAMGATE_STATE_DIR", data.join("cli-state"))
        .args(["--node", api, "--json", "publish", "--ladder", "720p,360p"])
        .args(extra)
        .arg(video)
        .stdin(Stdio::null())
        .output()
        .context("cannot run streamgate publish")?;
    if !out.status.success() {
        bail!(
            "publishing the demo video failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let result: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    result["manifest_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("publish printed no manifest id"))
}

/// Every node fetches and keeps both demo videos, so any of them can serve the rest.
async fn pin_everywhere(state: &State) -> anyhow::Result<()> {
    let Some(videos) = &state.videos else {
        return Ok(());
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    for k in 1..=state.nodes {
        let api = node_api(&state.ports, k);
        for id in [&videos.public, &videos.gated] {
            let response = client
                .post(format!("{api}/api/v1/manifests/{id}/pin"))
                .send()
                .await?;
            if !response.status().is_success() {
                bail!(
                    "node-{k} cannot pin {id}: {}",
                    response.text().await.unwrap_or_default()
                );
            }
        }
    }
    println!("waiting until every node holds both videos");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for k in 1..=state.nodes {
        let api = node_api(&state.ports, k);
        loop {
            let list: serde_json::Value = client
                .get(format!("{api}/api/v1/manifests"))
                .send()
                .await?
                .json()
                .await?;
            let complete = |id: &str| {
                list.as_array()
                    .is_some_and(|l| l.iter().any(|m| m["id"] == id && m["complete"] == true))
            };
            if complete(&videos.public) && complete(&videos.gated) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("node-{k} did not fetch the demo videos within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    Ok(())
}

async fn stop_all(data: &Path, state: &mut State, children: &mut Children) {
    let mut names: Vec<String> = children.running.keys().cloned().collect();
    // Nodes first, then the bootstrap node, then the chain (which saves its state on exit).
    names.sort_by_key(|n| match n.as_str() {
        "anvil" => 2,
        "bootstrap" => 1,
        _ => 0,
    });
    for name in names {
        let grace = if name == "anvil" {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(5)
        };
        children.stop(&name, grace).await;
    }
    for p in &mut state.processes {
        p.pid = None;
    }
    state.ready = false;
    state.supervisor_pid = None;
    let _ = state.save(data);
}

fn print_summary(state: &State) {
    println!();
    println!("StreamGate testnet is ready ({} nodes).", state.nodes);
    if let Some(chain) = &state.chain {
        println!(
            "  chain:      {} (chain id {})",
            chain.rpc_url, chain.chain_id
        );
        println!("  StreamPass: {}", chain.pass);
        println!("  StreamPass1155: {}", chain.pass1155);
        println!("  ContentRegistry: {}", chain.registry);
    }
    println!("  development accounts (anvil's well-known keys; never use them on a real chain):");
    for a in &state.accounts {
        println!(
            "    #{} {} {} {}",
            a.index,
            a.address,
            a.private_key,
            if a.has_pass {
                "holds a StreamPass"
            } else {
                "no pass"
            }
        );
    }
    for (name, url) in urls(state) {
        println!("  {name:<20} {url}");
    }
    if let Some(v) = &state.videos {
        println!();
        println!("Play the public video from node 2:");
        let k = state.nodes.min(2);
        println!(
            "  ffplay {}/hls/{}/master.m3u8",
            node_api(&state.ports, k),
            v.public
        );
        println!("Play the gated one with a pass holder's key:");
        if let Some(holder) = state.accounts.iter().find(|a| a.has_pass) {
            println!(
                "  TOKEN=$(KEY={} target/release/streamgate --node {} sign-in --private-key-env KEY)",
                holder.private_key,
                node_api(&state.ports, 1)
            );
        }
        println!(
            "  ffplay -headers \"Authorization: Bearer $TOKEN\" {}/hls/{}/master.m3u8",
            node_api(&state.ports, 1),
            v.gated
        );
    }
    println!();
    println!(
        "Logs are in {}; Ctrl-C stops everything.",
        state
            .processes
            .first()
            .and_then(|p| p.log.parent())
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
}
