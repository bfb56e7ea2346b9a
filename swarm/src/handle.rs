//! The swarm's handle: starting the actor task and the commands the rest of a daemon sends it.

use std::time::Duration;

use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, multiaddr::Protocol, noise, swarm::SwarmEvent, tcp,
    yamux,
};
use streamgate_protocol::{
    Announcement, ContentHash, SignedNodeRecord, worker::SignedWorkerAdvert,
};
use tokio::sync::{mpsc, oneshot};

pub use crate::behaviour::Role;
use crate::{actor, behaviour::Behaviour};

pub use streamgate_api::{config::DhtMode, v1::SwarmStatus};

/// Commands queued for the actor. 256: a burst of API requests waits here rather than
/// growing memory; callers feel backpressure through `send().await`.
const COMMAND_QUEUE: usize = 256;

/// Job offers waiting for the node to look at them; more are refused as busy at once.
const INBOUND_JOB_QUEUE: usize = 16;

/// What the swarm needs to start.
#[derive(Debug, Clone)]
pub struct SwarmOptions {
    pub role: Role,
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub dht_mode: DhtMode,
    pub mdns: bool,
    /// Addresses to announce as reachable without AutoNAT's confirmation (a bootstrap
    /// node is, by definition, reachable at its listen addresses).
    pub assume_listen_addrs_reachable: bool,
    /// Circuit reservations a bootstrap's libp2p relay holds at once (unused by nodes).
    pub relay_max_reservations: usize,
}

/// A provider of some content, as the swarm found it.
#[derive(Debug, Clone)]
pub struct Provider {
    pub peer: PeerId,
    /// Its verified node record, when one was already known.
    pub record: Option<SignedNodeRecord>,
}

/// Providers of some content, and whether they came from the cache.
#[derive(Debug, Clone, Default)]
pub struct ProviderAnswer {
    pub providers: Vec<Provider>,
    /// Answered from cached DHT results or gossip announcements, without a DHT walk.
    pub from_cache: bool,
}

/// Why a swarm command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SwarmError {
    #[error("the swarm task has stopped")]
    Stopped,
    #[error("cannot start the swarm: {0}")]
    Start(String),
    #[error("job exchange: {0}")]
    Job(String),
    #[error("cannot listen on {addr} (config key swarm.listen or --listen): {reason}")]
    Listen { addr: Multiaddr, reason: String },
}

#[derive(Debug)]
pub(crate) enum Command {
    Provide(ContentHash),
    FindProviders {
        hash: ContentHash,
        refresh: bool,
        reply: oneshot::Sender<ProviderAnswer>,
    },
    FindNodeRecord {
        peer: PeerId,
        reply: oneshot::Sender<Option<SignedNodeRecord>>,
    },
    PublishNodeRecord(SignedNodeRecord),
    Announce(Announcement),
    AdvertiseWorker(SignedWorkerAdvert),
    Workers(oneshot::Sender<Vec<SignedWorkerAdvert>>),
    OfferJob {
        peer: PeerId,
        offer: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, String>>,
    },
    Status(oneshot::Sender<SwarmStatus>),
    Shutdown(oneshot::Sender<()>),
}

/// The cheap-to-clone way to talk to the swarm task.
#[derive(Debug, Clone)]
pub struct SwarmHandle {
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
}

/// The running swarm: its handle and the addresses it listens on.
#[derive(Debug)]
pub struct StartedSwarm {
    pub handle: SwarmHandle,
    /// Full listen addresses, each ending in `/p2p/<peer id>`.
    pub listen_addrs: Vec<Multiaddr>,
    pub task: tokio::task::JoinHandle<()>,
    /// Job offers other nodes send this one (see [`crate::jobs`]), for whoever takes them.
    /// Dropping it refuses them.
    pub inbound_jobs: Option<mpsc::Receiver<crate::jobs::InboundJob>>,
}

/// Builds the swarm, binds every listen address, dials the bootstrap nodes and spawns the
/// actor. Returns once every listener has reported its address (so port 0 is resolved).
pub async fn start(
    keypair: libp2p::identity::Keypair,
    options: SwarmOptions,
) -> Result<StartedSwarm, SwarmError> {
    let role = options.role;
    let mdns = options.mdns;
    let max_reservations = options.relay_max_reservations;
    let mut swarm: Swarm<Behaviour> = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| SwarmError::Start(format!("tcp transport: {e}")))?
        .with_quic_config(|mut quic| {
            // A dead peer's QUIC address fails a dial only at this timeout (UDP gets no
            // refusal); 3 s instead of 5 s keeps lookups that meet one moving.
            quic.handshake_timeout = Duration::from_secs(3);
            quic
        })
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| SwarmError::Start(format!("relay client: {e}")))?
        .with_behaviour(|key, relay_client| {
            Behaviour::new(key, relay_client, role, mdns, max_reservations)
        })
        .map_err(|e| SwarmError::Start(format!("behaviour: {e}")))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let peer_id = *swarm.local_peer_id();

    swarm.behaviour_mut().kad.set_mode(match options.dht_mode {
        DhtMode::Server => Some(libp2p::kad::Mode::Server),
        DhtMode::Client => Some(libp2p::kad::Mode::Client),
        // Not kad's own automatic mode: it would also serve the DHT on a relayed address.
        DhtMode::Auto => Some(libp2p::kad::Mode::Client),
    });
    let topics = actor::Topics {
        announce: libp2p::gossipsub::IdentTopic::new(streamgate_protocol::announce::ANNOUNCE_TOPIC),
        workers: libp2p::gossipsub::IdentTopic::new(streamgate_protocol::worker::WORKER_TOPIC),
    };
    // Every daemon subscribes to both, so that the mesh forwards (and validates) both.
    for topic in [&topics.announce, &topics.workers] {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(topic)
            .map_err(|e| SwarmError::Start(format!("gossip subscribe: {e}")))?;
    }

    let listen_addrs = bind_listeners(&mut swarm, &options.listen).await?;
    if options.assume_listen_addrs_reachable {
        for addr in &listen_addrs {
            swarm.add_external_address(addr.clone());
        }
    }
    for addr in &options.bootstrap {
        let Some(Protocol::P2p(bootstrap_peer)) = addr.iter().last() else {
            continue;
        };
        if bootstrap_peer == peer_id {
            continue;
        }
        let mut transport_addr = addr.clone();
        transport_addr.pop();
        swarm
            .behaviour_mut()
            .kad
            .add_address(&bootstrap_peer, transport_addr);
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!(%addr, "cannot dial bootstrap node: {e}");
        }
    }

    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let full_addrs = listen_addrs
        .iter()
        .map(|a| a.clone().with(Protocol::P2p(peer_id)))
        .collect();
    let nat = crate::nat::NatState::new(
        options.dht_mode == DhtMode::Auto,
        role == Role::Node && options.dht_mode != DhtMode::Server,
        &options.bootstrap,
    );
    let (jobs_tx, jobs_rx) = mpsc::channel(INBOUND_JOB_QUEUE);
    let actor = actor::Actor::new(
        swarm,
        rx,
        topics,
        !options.bootstrap.is_empty(),
        nat,
        jobs_tx,
    );
    let task = tokio::spawn(actor.run());
    Ok(StartedSwarm {
        handle: SwarmHandle {
            commands: tx,
            peer_id,
        },
        listen_addrs: full_addrs,
        task,
        inbound_jobs: Some(jobs_rx),
    })
}

/// Listens on each address and waits until each listener reports its bound address.
async fn bind_listeners(
    swarm: &mut Swarm<Behaviour>,
    listen: &[Multiaddr],
) -> Result<Vec<Multiaddr>, SwarmError> {
    let mut pending = std::collections::HashMap::new();
    for addr in listen {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| SwarmError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        pending.insert(id, addr.clone());
    }
    let mut bound = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    while !pending.is_empty() {
        let event = tokio::select! {
            event = swarm.select_next_some() => event,
            _ = &mut deadline => {
                let addr = pending.values().next().cloned().unwrap_or_else(Multiaddr::empty);
                return Err(SwarmError::Listen { addr, reason: "no address reported within 10 s".into() });
            }
        };
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                pending.remove(&listener_id);
                bound.push(address);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(addr) = pending.remove(&listener_id) {
                    let reason = match reason {
                        Ok(()) => "listener closed".to_string(),
                        Err(e) => e.to_string(),
                    };
                    return Err(SwarmError::Listen { addr, reason });
                }
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                if let Some(addr) = pending.remove(&listener_id) {
                    return Err(SwarmError::Listen {
                        addr,
                        reason: error.to_string(),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(bound)
}

impl SwarmHandle {
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn send(&self, command: Command) -> Result<(), SwarmError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| SwarmError::Stopped)
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SwarmError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| SwarmError::Stopped)
    }

    /// Announces this node as a provider of `hash` in the DHT (in the background).
    pub async fn provide(&self, hash: ContentHash) -> Result<(), SwarmError> {
        self.send(Command::Provide(hash)).await
    }

    /// Providers of `hash`: from the cache of earlier answers and gossip announcements when
    /// it is fresh, else from a DHT walk; `refresh` skips the cache (its providers failed).
    /// Cancel-safe.
    pub async fn find_providers(
        &self,
        hash: ContentHash,
        refresh: bool,
    ) -> Result<ProviderAnswer, SwarmError> {
        self.ask(|reply| Command::FindProviders {
            hash,
            refresh,
            reply,
        })
        .await
    }

    /// Finds and verifies `peer`'s node record. Cancel-safe.
    pub async fn find_node_record(
        &self,
        peer: PeerId,
    ) -> Result<Option<SignedNodeRecord>, SwarmError> {
        self.ask(|reply| Command::FindNodeRecord { peer, reply })
            .await
    }

    /// Publishes this node's own record in the DHT (and republishes it after joins).
    pub async fn publish_node_record(&self, record: SignedNodeRecord) -> Result<(), SwarmError> {
        self.send(Command::PublishNodeRecord(record)).await
    }

    /// Gossips an announcement of new content.
    pub async fn announce(&self, announcement: Announcement) -> Result<(), SwarmError> {
        self.send(Command::Announce(announcement)).await
    }

    /// Gossips this node's advert as a volunteered worker.
    pub async fn advertise_worker(&self, advert: SignedWorkerAdvert) -> Result<(), SwarmError> {
        self.send(Command::AdvertiseWorker(advert)).await
    }

    /// The newest unexpired verified advert of each worker this node has heard of (its own
    /// included), newest first.
    pub async fn workers(&self) -> Result<Vec<SignedWorkerAdvert>, SwarmError> {
        self.ask(Command::Workers).await
    }

    /// Sends an encoded job offer to `peer` and waits for its encoded reply (or the
    /// reason none came: unreachable, closed, timed out). Cancel-safe.
    pub async fn offer_job(&self, peer: PeerId, offer: Vec<u8>) -> Result<Vec<u8>, SwarmError> {
        self.ask(|reply| Command::OfferJob { peer, offer, reply })
            .await?
            .map_err(SwarmError::Job)
    }

    pub async fn status(&self) -> Result<SwarmStatus, SwarmError> {
        self.ask(Command::Status).await
    }

    /// Stops the actor and closes every connection.
    pub async fn shutdown(&self) -> Result<(), SwarmError> {
        self.ask(Command::Shutdown).await
    }
}
