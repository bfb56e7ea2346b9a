//! The composed libp2p behaviour, shared by nodes and bootstrap nodes; each role turns on
//! the parts it serves.

use std::{num::NonZeroUsize, time::Duration};

use libp2p::{
    StreamProtocol, autonat, connection_limits, dcutr, gossipsub, identify, identity::Keypair, kad,
    mdns, ping, relay, request_response, swarm::NetworkBehaviour, swarm::behaviour::toggle::Toggle,
};
use streamgate_protocol::limits::MAX_GOSSIP_MESSAGE_BYTES;

/// Kademlia protocol name: a network of its own, apart from the public IPFS DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/streamgate/kad/1.0.0");
pub const IDENTIFY_PROTOCOL: &str = "/streamgate/id/1.0.0";

/// Which daemon the swarm belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Node,
    Bootstrap,
}

/// Not `Debug`: several of the composed libp2p behaviours do not implement it.
#[allow(missing_debug_implementations)]
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: gossipsub::Behaviour,
    pub relay_client: relay::client::Behaviour,
    pub dcutr: dcutr::Behaviour,
    pub relay_server: Toggle<relay::Behaviour>,
    pub autonat_client: Toggle<autonat::v2::client::Behaviour>,
    pub autonat_server: autonat::v2::server::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub jobs: request_response::Behaviour<crate::jobs::JobCodec>,
}

/// Connection bounds: enough for a busy node, small enough that a flood of dials cannot
/// exhaust file descriptors (each connection holds sockets and yamux buffers).
const MAX_ESTABLISHED: u32 = 512;
const MAX_PENDING_INCOMING: u32 = 64;
const MAX_ESTABLISHED_PER_PEER: u32 = 4;
/// How long a job offer waits for its reply at most: the longest deadline an offer may
/// set, and a minute more (publishers enforce their own, shorter, deadline).
const JOB_REPLY_TIMEOUT: Duration =
    Duration::from_secs(streamgate_protocol::job::MAX_JOB_SECS + 60);
/// Relayed libp2p connections a bootstrap carries at once (libp2p's default is 16).
const RELAY_MAX_CIRCUITS: usize = 256;

impl Behaviour {
    pub fn new(
        key: &Keypair,
        relay_client: relay::client::Behaviour,
        role: Role,
        mdns_on: bool,
        relay_max_reservations: usize,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let peer_id = key.public().to_peer_id();
        let limits = connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established(Some(MAX_ESTABLISHED))
                .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
                .with_max_established_per_peer(Some(MAX_ESTABLISHED_PER_PEER)),
        );
        let agent = match role {
            Role::Node => concat!("streamgate-node/", env!("CARGO_PKG_VERSION")),
            Role::Bootstrap => concat!("streamgate-bootstrap/", env!("CARGO_PKG_VERSION")),
        };
        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
                .with_agent_version(agent.to_string()),
        );

        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config
            .set_query_timeout(Duration::from_secs(10))
            // Inbound records and provider announcements go through our validation first.
            .set_record_filtering(kad::StoreInserts::FilterBoth)
            .set_max_packet_size(64 * 1024)
            .set_replication_factor(NonZeroUsize::new(20).expect("non-zero"))
            // Six requests in flight instead of three: a lookup whose first peers are dead
            // (churn) then still reaches live ones without waiting out dial timeouts.
            .set_parallelism(NonZeroUsize::new(6).expect("non-zero"));
        let store = kad::store::MemoryStore::with_config(
            peer_id,
            kad::store::MemoryStoreConfig {
                // Records are node records only: one per peer in the network's neighbourhood.
                max_records: 16 * 1024,
                max_value_bytes: streamgate_protocol::limits::MAX_NODE_RECORD_BYTES,
                max_providers_per_key: 20,
                // One provided key per stored blob (per manifest once manifests exist).
                max_provided_keys: 256 * 1024,
            },
        );
        let kad = kad::Behaviour::with_config(peer_id, store, kad_config);

        let gossip_config = gossipsub::ConfigBuilder::default()
            .max_transmit_size(MAX_GOSSIP_MESSAGE_BYTES)
            .validation_mode(gossipsub::ValidationMode::Strict)
            // The application accepts or rejects each message before it is forwarded.
            .validate_messages()
            .heartbeat_interval(Duration::from_secs(1))
            .build()
            .map_err(|e| format!("gossipsub config: {e}"))?;
        let gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossip_config,
        )
        .map_err(|e| format!("gossipsub: {e}"))?;

        let relay_server = (role == Role::Bootstrap).then(|| {
            // Circuits carry control traffic only (libp2p's caps: 128 KiB and two minutes
            // each); the reservations are the home nodes reachable through this relay.
            let config = relay::Config {
                max_reservations: relay_max_reservations,
                max_circuits: RELAY_MAX_CIRCUITS,
                ..relay::Config::default()
            };
            relay::Behaviour::new(peer_id, config)
        });
        let autonat_client = (role == Role::Node).then(autonat::v2::client::Behaviour::default);
        let mdns = if mdns_on {
            Some(
                mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                    .map_err(|e| format!("mdns: {e}"))?,
            )
        } else {
            None
        };
        // Nodes offer and take jobs; a bootstrap does neither.
        let job_support = match role {
            Role::Node => request_response::ProtocolSupport::Full,
            Role::Bootstrap => request_response::ProtocolSupport::Outbound,
        };
        let jobs = request_response::Behaviour::with_codec(
            crate::jobs::JobCodec,
            [(crate::jobs::JOBS_PROTOCOL, job_support)],
            request_response::Config::default()
                .with_request_timeout(JOB_REPLY_TIMEOUT)
                .with_max_concurrent_streams(64),
        );
        Ok(Self {
            jobs,
            limits,
            identify,
            ping: ping::Behaviour::default(),
            kad,
            gossipsub,
            relay_client,
            dcutr: dcutr::Behaviour::new(peer_id),
            relay_server: relay_server.into(),
            autonat_client: autonat_client.into(),
            autonat_server: autonat::v2::server::Behaviour::default(),
            mdns: mdns.into(),
        })
    }
}
