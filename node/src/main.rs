//! `streamgate-node`: the StreamGate node daemon.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use libp2p::Multiaddr;
use serde::Serialize;
use streamgate_node::{
    api,
    config::{Config, DEFAULT_CONFIG_TOML, HardwareUse},
    data_plane::DataPlane,
    db::NodeDb,
    identity::Identity,
    node::{Node, NodeParts, RECORD_REFRESH},
    runfile::{ReadyFile, init_logging, run_main, shutdown_signal},
    swarm::{self, Role, SwarmOptions},
};

#[derive(Parser)]
#[command(
    name = "streamgate-node",
    version,
    about = "The StreamGate node daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the node's Ed25519 key (DIR/node.key, mode 0600) and a commented DIR/config.toml.
    Init {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Run the daemon until SIGINT or SIGTERM.
    Run {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// libp2p listen address (repeatable); replaces swarm.listen from the config.
        #[arg(long, value_name = "MULTIADDR")]
        listen: Vec<Multiaddr>,
        /// Entry node, ending in /p2p/<peer id> (repeatable); replaces swarm.bootstrap.
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<Multiaddr>,
        /// Address of the HTTP API and gateway; replaces api.listen (default 127.0.0.1:7700).
        #[arg(long, value_name = "ADDR:PORT")]
        api_listen: Option<SocketAddr>,
    },
    /// Probe which hardware encoders and decoders really open on this machine, and print
    /// the transcoding mode a worker would advertise (gpu, gpu-decode-cpu-encode, cpu).
    Capabilities {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What `DIR/run/node.json` holds while the node runs.
#[derive(Serialize)]
struct ReadyInfo {
    peer_id: String,
    node_id: String,
    pid: u32,
    listen_addrs: Vec<String>,
    api_url: String,
    data_plane: DataPlaneInfo,
}

#[derive(Serialize)]
struct DataPlaneInfo {
    node_id: String,
    addrs: Vec<String>,
    relay_url: Option<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    run_main(async {
        match cli.command {
            Command::Init { data_dir } => init(&data_dir),
            Command::Run {
                data_dir,
                listen,
                bootstrap,
                api_listen,
            } => run(&data_dir, listen, bootstrap, api_listen).await,
            Command::Capabilities { json } => {
                capabilities(json);
                Ok(())
            }
        }
    })
}

fn init(data_dir: &Path) -> anyhow::Result<()> {
    let identity = Identity::create(data_dir)?;
    let config_path = data_dir.join("config.toml");
    if config_path.exists() {
        println!("kept existing {}", config_path.display());
    } else {
        std::fs::write(&config_path, DEFAULT_CONFIG_TOML)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
    }
    println!("peer id: {}", identity.peer_id());
    println!("key:     {}", Identity::key_path(data_dir).display());
    println!("config:  {}", config_path.display());
    Ok(())
}

fn capabilities(json: bool) {
    let caps = streamgate_media::hw::probe();
    if json {
        println!("{}", caps.to_json());
        return;
    }
    let report = caps.to_json();
    println!("mode: {}", report["mode"].as_str().unwrap_or("cpu"));
    for (title, list) in [
        ("devices", &caps.devices),
        ("encoders", &caps.encoders),
        ("decoders", &caps.decoders),
    ] {
        println!("{title}:");
        for probe in list {
            let mark = if probe.available { "yes" } else { "no " };
            println!("  {mark} {:<12} {}", probe.name, probe.detail);
        }
    }
}

async fn run(
    data_dir: &Path,
    listen: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    api_listen: Option<SocketAddr>,
) -> anyhow::Result<()> {
    // Both rustls back-ends end up in the build; pick one before anything uses TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let identity = Identity::load(data_dir)?;
    let config_path = data_dir.join("config.toml");
    let mut config = Config::load(&config_path)?;
    if !listen.is_empty() {
        config.swarm.listen = listen;
    }
    if !bootstrap.is_empty() {
        config.swarm.bootstrap = bootstrap;
    }
    if let Some(addr) = api_listen {
        config.api.listen = addr;
    }
    config.validate("command line")?;
    if config.testing.corrupt_served_byte_at.is_some() {
        tracing::warn!(
            "testing.corrupt_served_byte_at is set: this node serves corrupt bytes on purpose"
        );
    }

    let db_path = data_dir.join("node.redb");
    let db = Arc::new(NodeDb::open(&db_path).with_context(|| {
        format!(
            "cannot open {} (is another node running on this data dir?)",
            db_path.display()
        )
    })?);
    let data_plane = DataPlane::start(
        &config.data_plane,
        &identity,
        &data_dir.join("blobs"),
        config.testing.corrupt_served_byte_at,
    )
    .await?;
    let started = swarm::start(
        identity.libp2p_keypair(),
        SwarmOptions {
            role: Role::Node,
            listen: config.swarm.listen.clone(),
            bootstrap: config.swarm.bootstrap.clone(),
            dht_mode: config.swarm.dht_mode,
            mdns: config.swarm.mdns,
            assume_listen_addrs_reachable: false,
        },
    )
    .await?;
    let descriptors = streamgate_node::zerocopy::raise_descriptor_limit();
    tracing::debug!(descriptors, "open descriptor limit");
    let api_addr = config.api.listen;
    let listener = tokio::net::TcpListener::bind(api_addr)
        .await
        .with_context(|| format!("cannot listen on {api_addr} for the HTTP API (config key api.listen or --api-listen)"))?;
    let api_url = format!("http://{}", listener.local_addr()?);

    let capabilities = (config.transcode.hardware == HardwareUse::Auto).then(|| {
        let caps = tokio::task::block_in_place(streamgate_media::hw::probe);
        tracing::info!(mode = %caps.to_json()["mode"], "hardware probe");
        caps
    });
    let access =
        streamgate_node::access::Access::new(&config, &api_url).map_err(anyhow::Error::msg)?;
    let node = Arc::new(Node::new(NodeParts {
        identity,
        config,
        data_dir: data_dir.to_path_buf(),
        db,
        data_plane: data_plane.clone(),
        swarm: started.handle.clone(),
        capabilities,
        access,
    })?);
    node.publish_node_record().await;
    let reannounced = node.provide_stored().await?;

    let record = node.own_record().record;
    let ready = ReadyFile::write(
        data_dir,
        "node",
        &ReadyInfo {
            peer_id: node.identity.peer_id().to_string(),
            node_id: hex::encode(node.identity.public_key()),
            pid: std::process::id(),
            listen_addrs: started.listen_addrs.iter().map(|a| a.to_string()).collect(),
            api_url: api_url.clone(),
            data_plane: DataPlaneInfo {
                node_id: hex::encode(record.node_key),
                addrs: record.direct_addrs.iter().map(|a| a.to_string()).collect(),
                relay_url: record.relay_url.clone(),
            },
        },
    )
    .context("cannot write the ready file")?;
    tracing::info!(
        peer_id = %node.identity.peer_id(),
        api = %api_url,
        blobs = reannounced,
        "node ready"
    );

    streamgate_node::publish::resume_jobs(&node);

    let refresher = {
        let node = node.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RECORD_REFRESH);
            tick.tick().await;
            loop {
                tick.tick().await;
                node.publish_node_record().await;
            }
        })
    };

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(
        axum::serve(
            streamgate_node::zerocopy::SendfileListener::new(listener),
            api::router(node.clone()),
        )
        .with_graceful_shutdown(async {
            let _ = stop_rx.await;
        })
        .into_future(),
    );
    let signal = tokio::select! {
        signal = shutdown_signal() => signal?,
        result = &mut server => bail!("the HTTP API server stopped unexpectedly: {result:?}"),
    };
    tracing::info!("{signal} received; shutting down");

    // Every step is bounded so the whole shutdown finishes within 5 seconds.
    refresher.abort();
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), node.swarm.shutdown()).await;
    let _ = tokio::time::timeout(Duration::from_millis(1500), data_plane.shutdown()).await;
    ready.remove();
    tracing::info!("stopped");
    Ok(())
}
