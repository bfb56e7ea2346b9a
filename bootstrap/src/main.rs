//! `streamgate-bootstrap`: a well-known entry node for a StreamGate network.
//!
//! It runs the same swarm as a node, in the bootstrap role: Kademlia in server mode (it
//! stores and validates DHT records like every node), a libp2p relay v2 server, an AutoNAT
//! server, and gossip forwarding. Beside it runs an iroh relay server for the data plane,
//! over plain HTTP unless put behind TLS by the operator, and advertises it in a signed
//! node record (no data-plane addresses, only the relay) that nodes joining through this
//! bootstrap read to find a relay without configuration. It stores no blobs.

mod relay_limits;

use std::{net::SocketAddr, num::NonZeroU32, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use libp2p::Multiaddr;
use streamgate_api::ready::BootstrapReady;
use streamgate_protocol::NodeRecord;
use streamgate_swarm::{
    DhtMode, Role, SwarmHandle, SwarmOptions,
    daemon::{ReadyFile, init_logging, run_main, shutdown_signal, unix_now},
    identity::Identity,
    records::RECORD_REFRESH,
};

#[derive(Parser)]
#[command(
    name = "streamgate-bootstrap",
    version,
    about = "A StreamGate entry node: DHT server, relay, AutoNAT and an iroh relay"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the bootstrap node's Ed25519 key (DIR/node.key, mode 0600).
    Init {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Run until SIGINT or SIGTERM.
    Run {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// libp2p listen address (repeatable). Default: TCP and QUIC on all interfaces, port 4001.
        #[arg(long, value_name = "MULTIADDR")]
        listen: Vec<Multiaddr>,
        /// Other entry nodes to peer with, ending in /p2p/<peer id> (repeatable).
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<Multiaddr>,
        /// HTTP address of the iroh relay for the data plane, advertised in this node's DHT
        /// record (nodes put the address they joined through in place of 0.0.0.0).
        #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:3340")]
        relay_listen: SocketAddr,
        /// Do not run the iroh relay.
        #[arg(long)]
        no_relay: bool,
        /// UDP address of the relay's QUIC address discovery, which tells nodes behind NAT
        /// their public address so that two of them can punch a direct path. Nodes look for
        /// it on port 7842 of the relay's host; another port serves only nodes told so.
        #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:7842")]
        qad_listen: SocketAddr,
        /// Do not run QUIC address discovery.
        #[arg(long)]
        no_qad: bool,
        /// Nodes the relays serve at once: connected to the iroh relay, and holding a
        /// libp2p circuit reservation. Further nodes are refused with a reason.
        #[arg(long, value_name = "N", default_value_t = 1024)]
        relay_max_nodes: usize,
        /// Bytes per second the iroh relay reads from each node (what it relays for it);
        /// 0: no limit. Default 8 MiB/s, above a 1080p stream's rate.
        #[arg(long, value_name = "BYTES", default_value_t = 8 * 1024 * 1024)]
        relay_rate: u32,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    run_main(async {
        match cli.command {
            Command::Init { data_dir } => {
                let identity = Identity::create(&data_dir)?;
                println!("peer id: {}", identity.peer_id());
                Ok(())
            }
            Command::Run {
                data_dir,
                listen,
                bootstrap,
                relay_listen,
                no_relay,
                qad_listen,
                no_qad,
                relay_max_nodes,
                relay_rate,
            } => {
                run(
                    data_dir,
                    listen,
                    bootstrap,
                    (!no_relay).then_some(relay_listen),
                    (!no_relay && !no_qad).then_some(qad_listen),
                    RelayCaps {
                        max_nodes: relay_max_nodes,
                        rate: NonZeroU32::new(relay_rate),
                    },
                )
                .await
            }
        }
    })
}

/// The operator's caps on what the relays carry (`relay_limits`).
struct RelayCaps {
    max_nodes: usize,
    /// Bytes per second read from each node; `None`: unlimited.
    rate: Option<NonZeroU32>,
}

async fn run(
    data_dir: PathBuf,
    listen: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    relay_listen: Option<SocketAddr>,
    qad_listen: Option<SocketAddr>,
    caps: RelayCaps,
) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let identity = Identity::load(&data_dir)?;
    let listen = if listen.is_empty() {
        vec![
            "/ip4/0.0.0.0/tcp/4001".parse()?,
            "/ip4/0.0.0.0/udp/4001/quic-v1".parse()?,
        ]
    } else {
        listen
    };
    let started = streamgate_swarm::start(
        identity.libp2p_keypair(),
        SwarmOptions {
            role: Role::Bootstrap,
            listen,
            bootstrap,
            dht_mode: DhtMode::Server,
            mdns: false,
            assume_listen_addrs_reachable: true,
            relay_max_reservations: caps.max_nodes,
        },
    )
    .await?;

    let relay = match relay_listen {
        Some(addr) => {
            let mut config = iroh_relay::server::ServerConfig::default();
            let mut relay = iroh_relay::server::RelayConfig::new(addr);
            relay.access = Arc::new(relay_limits::NodeSlots(relay_limits::Slots::new(
                caps.max_nodes,
            )));
            relay.limits.client_rx = caps.rate.map(|rate| {
                let mut limit = iroh_relay::server::ClientRateLimit::new(rate);
                // A second's worth in one burst: QUIC sends in bursts.
                limit.max_burst_bytes = Some(rate);
                limit
            });
            config.relay = Some(relay);
            if let Some(qad) = qad_listen {
                let mut quic = iroh_relay::server::QuicConfig::new(qad);
                quic.server_config = Some(qad_tls(&identity)?);
                config.quic = Some(quic);
            }
            let server = iroh_relay::server::Server::spawn(config)
                .await
                .with_context(|| {
                    format!(
                        "cannot start the iroh relay on {addr} (--relay-listen) with address discovery on {qad_listen:?} (--qad-listen)"
                    )
                })?;
            Some(server)
        }
        None => None,
    };
    let relay_url = relay
        .as_ref()
        .and_then(|s| s.http_addr())
        .map(|addr| format!("http://{addr}"));

    let ready = ReadyFile::write(
        &data_dir,
        &BootstrapReady {
            peer_id: identity.peer_id().to_string(),
            pid: std::process::id(),
            listen_addrs: started.listen_addrs.iter().map(|a| a.to_string()).collect(),
            iroh_relay_url: relay_url.clone(),
        },
    )
    .context("cannot write the ready file")?;
    tracing::info!(peer_id = %identity.peer_id(), relay = ?relay_url, "bootstrap ready");
    let advertiser = relay_url.map(|url| {
        tokio::spawn(advertise_relay(
            identity.clone(),
            started.handle.clone(),
            url,
        ))
    });

    let mut task = started.task;
    let signal = tokio::select! {
        signal = shutdown_signal() => signal?,
        _ = &mut task => bail!("the swarm task stopped unexpectedly"),
    };
    tracing::info!("{signal} received; shutting down");
    if let Some(advertiser) = advertiser {
        advertiser.abort();
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), started.handle.shutdown()).await;
    if let Some(relay) = relay {
        let _ = tokio::time::timeout(Duration::from_secs(2), relay.shutdown()).await;
    }
    ready.remove();
    tracing::info!("stopped");
    Ok(())
}

/// Keeps this bootstrap's node record in the DHT, naming its iroh relay: how the nodes that
/// join through it learn a relay. A relay listening on an unspecified address (0.0.0.0) is
/// advertised as such, and each node puts in the address it reached this bootstrap at.
async fn advertise_relay(identity: Identity, swarm: SwarmHandle, relay_url: String) {
    let mut refresh = tokio::time::interval(RECORD_REFRESH);
    loop {
        refresh.tick().await;
        let record = NodeRecord {
            node_key: identity.public_key(),
            direct_addrs: Vec::new(),
            relay_url: Some(relay_url.clone()),
            issued_at: unix_now(),
        }
        .sign(&identity.signing_key());
        if let Err(e) = swarm.publish_node_record(record).await {
            tracing::warn!("cannot publish the relay's record: {e}");
        }
    }
}

/// TLS for QUIC address discovery: a self-signed certificate whose key is this bootstrap's
/// Ed25519 identity key. Nodes trust it because that key is in the peer id of the bootstrap
/// address they were given (`node/src/actors/relay_tls.rs`); no name in it is checked.
fn qad_tls(identity: &Identity) -> anyhow::Result<rustls::ServerConfig> {
    let pkcs8 = identity.pkcs8();
    let key = rcgen::KeyPair::try_from(pkcs8.as_slice()).context("QAD key")?;
    let cert = rcgen::CertificateParams::new(vec!["streamgate-bootstrap".to_string()])?
        .self_signed(&key)
        .context("QAD certificate")?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let private = rustls::pki_types::PrivateKeyDer::Pkcs8(pkcs8.into());
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], private)?)
}
