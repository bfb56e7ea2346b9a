//! `streamgate-testnet up`: start or resume the network, then supervise it until Ctrl-C,
//! SIGTERM or `down`.
//!
//! Every step of start-up runs inside one future raced against the shutdown signal, and
//! every process is a `tokio::process` child: Ctrl-C at any moment (mid-deploy,
//! mid-publish) drops the step, kills the short-lived commands it ran (`kill_on_drop`),
//! and stops the long-running ones in order, leaving no process behind.

use std::{
    collections::HashMap,
    fs::OpenOptions,
    net::{TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, anyhow, bail};
use streamgate_api::ready::ReadyInfo;
use tokio::process::{Child, Command};

use crate::{
    chain, demo, nodes,
    state::{Ports, ProcessState, State, alive},
    summary,
};

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Worker nodes started besides them (node N+1 on): they volunteer to transcode, and
    /// the public demo video is transcoded by them.
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Folder for every process's data and logs; running `up` again on it resumes the network.
    #[arg(long, default_value = "./testnet-data")]
    pub data: PathBuf,
    /// Video to publish as the demo (default: a clip generated with FFmpeg).
    #[arg(long)]
    pub video: Option<PathBuf>,
    /// anvil's JSON-RPC port.
    #[arg(long, default_value_t = 8545)]
    pub anvil_port: u16,
    /// The bootstrap node's libp2p port (TCP and QUIC); its iroh relay uses the next port.
    #[arg(long, default_value_t = 4001)]
    pub bootstrap_port: u16,
    /// HTTP API port of node 1; node K uses this + K - 1.
    #[arg(long, default_value_t = 7701)]
    pub api_port: u16,
}

/// The binaries and tools the network is made of, found before anything starts.
#[derive(Debug)]
pub struct Tools {
    pub anvil: PathBuf,
    pub node: PathBuf,
    pub bootstrap: PathBuf,
    pub cli: PathBuf,
}

impl Tools {
    fn find(need_ffmpeg: bool) -> anyhow::Result<Self> {
        if need_ffmpeg && which("ffmpeg").is_none() {
            bail!(
                "ffmpeg is missing (needed to make the demo clip): run `make setup`, or pass --video FILE"
            );
        }
        Ok(Self {
            anvil: anvil_binary()?,
            node: sibling("streamgate-node")?,
            bootstrap: sibling("streamgate-bootstrap")?,
            cli: sibling("streamgate")?,
        })
    }
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

/// The long-running processes `up` started, by name.
#[derive(Debug)]
pub struct Children {
    data: PathBuf,
    running: HashMap<String, Child>,
}

impl Children {
    pub fn log(&self, name: &str) -> PathBuf {
        self.data.join("logs").join(format!("{name}.log"))
    }

    /// Starts `command` as `name`, output to its log; returns its pid.
    pub fn spawn(&mut self, name: &str, command: &mut Command) -> anyhow::Result<u32> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(name))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            // A supervisor that dies takes its network with it.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let pid = child.id().ok_or_else(|| anyhow!("{name} exited at once"))?;
        self.running.insert(name.to_string(), child);
        Ok(pid)
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&mut self, name: &str, grace: Duration) {
        let Some(mut child) = self.running.remove(name) else {
            return;
        };
        if let Some(pid) = child.id() {
            crate::state::signal(pid, libc::SIGTERM);
        }
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }

    pub fn is_running(&self, name: &str) -> bool {
        self.running.contains_key(name)
    }

    /// Children that exited on their own since the last call, with how.
    pub fn reap(&mut self) -> Vec<(String, String)> {
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

    /// Waits until `process` wrote its ready file in `dir`.
    pub async fn ready<I: ReadyInfo>(&mut self, dir: &Path, process: &str) -> anyhow::Result<I> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(info) = I::read(dir) {
                return Ok(info);
            }
            if !self.is_running(process) || !self.reap().is_empty() {
                bail!(
                    "{process} exited during start-up; see {}",
                    self.log(process).display()
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "{process} was not ready within 60 s; see {}",
                    self.log(process).display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop_all(&mut self) {
        let mut names: Vec<String> = self.running.keys().cloned().collect();
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
            self.stop(&name, grace).await;
        }
    }
}

/// Runs a short-lived command to its end (killed if the caller is dropped, e.g. by Ctrl-C).
pub async fn run(command: &mut Command, what: &str) -> anyhow::Result<std::process::Output> {
    command
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("cannot run {what}"))
}

pub async fn up(args: UpArgs) -> anyhow::Result<bool> {
    if args.nodes == 0 || args.nodes > 32 {
        bail!("--nodes must be between 1 and 32");
    }
    if args.workers > 16 {
        bail!("--workers must be between 0 and 16");
    }
    let total = args.nodes + args.workers;
    std::fs::create_dir_all(args.data.join("logs"))?;
    let data = std::fs::canonicalize(&args.data)?;
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
    let tools = Tools::find(state.videos.is_none() && args.video.is_none())?;
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
    for k in 1..=total {
        check_port_free(
            ports.first_api + k as u16 - 1,
            &format!("node-{k}'s API"),
            "--api-port",
        )?;
    }
    state.supervisor_pid = Some(std::process::id());
    state.ready = false;
    state.nodes = total;
    state.workers = args.workers;
    state.ports = ports;
    state.save(&data)?;

    let mut children = Children {
        data: data.clone(),
        running: HashMap::new(),
    };
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let started = tokio::select! {
        result = start(&args, &data, &mut state, &mut children, &tools) => result,
        _ = &mut shutdown => Err(anyhow!("interrupted during start-up")),
    };
    if let Err(e) = started {
        stop_all(&data, &mut state, &mut children).await;
        return Err(e);
    }
    state.ready = true;
    state.save(&data)?;
    summary::print(&state);

    let mut tick = tokio::time::interval(Duration::from_millis(300));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => supervise(&data, &mut state, &mut children, &tools).await?,
        }
    }
    println!("stopping the testnet");
    stop_all(&data, &mut state, &mut children).await;
    Ok(true)
}

/// Notices exited children and carries out `restart-node` requests.
async fn supervise(
    data: &Path,
    state: &mut State,
    children: &mut Children,
    tools: &Tools,
) -> anyhow::Result<()> {
    for (name, status) in children.reap() {
        println!("{name} exited ({status}); `streamgate-testnet restart-node` starts a node again");
        if let Some(mut p) = state.process(&name).cloned() {
            p.pid = None;
            state.set_process(p);
        }
        state.save(data)?;
    }
    for k in 1..=state.nodes {
        let request = data.join("control").join(format!("restart-node-{k}"));
        if request.exists() {
            let name = format!("node-{k}");
            children.stop(&name, Duration::from_secs(5)).await;
            match nodes::start_node(data, state, children, &tools.node, k).await {
                Ok(()) => println!("{name} restarted"),
                Err(e) => println!("cannot restart {name}: {e:#}"),
            }
            state.save(data)?;
            let _ = std::fs::remove_file(&request);
        }
    }
    Ok(())
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

/// Chain, bootstrap node, nodes, then the demo videos, each resumed where it can be.
async fn start(
    args: &UpArgs,
    data: &Path,
    state: &mut State,
    children: &mut Children,
    tools: &Tools,
) -> anyhow::Result<()> {
    let pid = chain::start_anvil(data, state, children, &tools.anvil).await?;
    state.set_process(ProcessState {
        name: "anvil".into(),
        pid: Some(pid),
        log: children.log("anvil"),
        api_url: None,
    });
    state.save(data)?;
    chain::deploy_once(data, state).await?;
    nodes::start_bootstrap(data, state, children, &tools.bootstrap).await?;
    for k in 1..=state.nodes {
        nodes::start_node(data, state, children, &tools.node, k).await?;
        let role = if nodes::is_worker(state, k) {
            " (worker)"
        } else {
            ""
        };
        println!(
            "node-{k}{role} is up at {}",
            nodes::node_api(&state.ports, k)
        );
    }
    if state.videos.is_none() {
        demo::publish_demo(args.video.as_deref(), data, state, &tools.cli).await?;
    }
    demo::pin_everywhere(state, data).await
}

async fn stop_all(data: &Path, state: &mut State, children: &mut Children) {
    children.stop_all().await;
    for p in &mut state.processes {
        p.pid = None;
    }
    state.ready = false;
    state.supervisor_pid = None;
    let _ = state.save(data);
}
