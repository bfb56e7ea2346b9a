//! Assembling a node: the actors started, the services built on them, wired together once.
//! `Node` holds a handle to each; it owns no state of its own.

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use streamgate_api::{
    ready::{DataPlaneReady, NodeReady},
    v1::{HttpStatus, NodeStatus, Reachability, UploadsStatus},
};
use streamgate_media::hw::Capabilities;
use streamgate_swarm::{
    Role, StartedSwarm, SwarmHandle, SwarmOptions, daemon::unix_now, identity::Identity,
};

use crate::{
    actors::{data_plane::DataPlane, db::NodeDb},
    config::{Config, HardwareUse},
    services::{
        access::Access,
        blobs::Blobs,
        fetch::Fetcher,
        hot::HotCache,
        library::Library,
        operator::OperatorToken,
        presence::{Presence, RECORD_REFRESH},
        publish::{PublishParts, Publisher, WorkParts},
        relays,
        reputation::{self, Reputation},
        uploads::Uploads,
        worker,
    },
};

/// A running node: a handle to every service, for the HTTP layer and the daemon.
#[derive(Debug)]
pub struct Node {
    pub config: Config,
    pub identity: Identity,
    pub swarm: SwarmHandle,
    pub data_plane: DataPlane,
    pub presence: Arc<Presence>,
    pub reputation: Arc<Reputation>,
    /// Standing of the workers this node gave jobs to.
    pub worker_standing: Arc<Reputation>,
    pub blobs: Arc<Blobs>,
    pub fetcher: Fetcher,
    pub library: Arc<Library>,
    pub hot: Arc<HotCache>,
    pub uploads: Arc<Uploads>,
    pub publisher: Arc<Publisher>,
    pub access: Arc<Access>,
    /// The credential every write or spend needs.
    pub operator: OperatorToken,
    pub capabilities: Option<Capabilities>,
    /// Job offers from publishers, for the worker once it starts (taken by `go_live`).
    inbound_jobs:
        std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<streamgate_swarm::jobs::InboundJob>>>,
    /// Where this node keeps files of work in progress (chunks).
    work_dir: std::path::PathBuf,
    /// libp2p listen addresses, each ending in `/p2p/<peer id>`.
    pub listen_addrs: Vec<String>,
    /// Base URL of the HTTP API.
    pub api_url: String,
}

impl Node {
    /// Opens the database and the blob store, binds the data plane and the swarm, and
    /// builds the services. `api_url` is where the HTTP API will listen.
    pub async fn start(
        data_dir: &Path,
        identity: Identity,
        config: Config,
        api_url: String,
    ) -> anyhow::Result<(Self, StartedSwarm)> {
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
            relays::bootstrap_keys(&config.swarm.bootstrap),
            config.testing.corrupt_served_byte_at,
        )
        .await?;
        let mut started = streamgate_swarm::start(
            identity.libp2p_keypair(),
            SwarmOptions {
                role: Role::Node,
                listen: config.swarm.listen.clone(),
                bootstrap: config.swarm.bootstrap.clone(),
                dht_mode: config.swarm.dht_mode,
                mdns: config.swarm.mdns,
                assume_listen_addrs_reachable: false,
                relay_max_reservations: 0,
            },
        )
        .await?;
        let swarm = started.handle.clone();
        let capabilities = (config.transcode.hardware == HardwareUse::Auto).then(|| {
            let caps = tokio::task::block_in_place(streamgate_media::hw::probe);
            tracing::info!(mode = %caps.to_json()["mode"], "hardware probe");
            caps
        });
        let access =
            Arc::new(Access::new(&config, &api_url, identity.clone()).map_err(anyhow::Error::msg)?);
        let presence = Arc::new(Presence::new(
            identity.clone(),
            data_plane.clone(),
            swarm.clone(),
        ));
        let reputation = Arc::new(Reputation::load(db.clone())?);
        let blobs = Arc::new(Blobs::new(
            data_plane.store().clone(),
            data_dir.join("spool"),
            db.clone(),
            swarm.clone(),
            presence.clone(),
            identity.clone(),
        ));
        let fetcher = Fetcher::new(
            config.fetch.clone(),
            identity.public_key(),
            blobs.clone(),
            data_plane.clone(),
            swarm.clone(),
            reputation.clone(),
        );
        let library = Arc::new(Library::new(
            db.clone(),
            blobs.clone(),
            fetcher.clone(),
            swarm.clone(),
            presence.clone(),
            identity.clone(),
        ));
        let hot = Arc::new(HotCache::new(
            config.api.segment_cache_bytes,
            data_dir.to_path_buf(),
        ));
        let uploads = Arc::new(Uploads::new(
            data_dir.join("uploads"),
            db.clone(),
            config.api.max_upload_bytes,
            config.uploads.clone(),
        ));
        let worker_standing = Arc::new(Reputation::load_kind(
            db.clone(),
            reputation::Kind::Workers,
        )?);
        let work = Arc::new(WorkParts {
            swarm: swarm.clone(),
            fetcher: fetcher.clone(),
            presence: presence.clone(),
            standing: worker_standing.clone(),
            data_plane: data_plane.clone(),
            work_dir: data_dir.join("work"),
        });
        let publisher = Publisher::new(PublishParts {
            work,
            db,
            uploads: uploads.clone(),
            blobs: blobs.clone(),
            library: library.clone(),
            access: access.clone(),
            identity: identity.clone(),
            settings: config.transcode.clone(),
            capabilities: capabilities.clone(),
        });
        let node = Self {
            listen_addrs: started.listen_addrs.iter().map(|a| a.to_string()).collect(),
            config,
            identity,
            swarm,
            data_plane,
            presence,
            reputation,
            worker_standing,
            blobs,
            fetcher,
            library,
            hot,
            uploads,
            publisher,
            access,
            operator: OperatorToken::load_or_create(data_dir)
                .context("cannot make or read the operator token (DATA_DIR/api.token)")?,
            capabilities,
            api_url,
            inbound_jobs: std::sync::Mutex::new(started.inbound_jobs.take()),
            work_dir: data_dir.join("work"),
        };
        Ok((node, started))
    }

    /// Announces the node and what it holds, resumes interrupted jobs, and keeps the node
    /// record fresh. Returns the record refresher's task.
    pub async fn go_live(&self) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        self.presence.publish().await;
        let reannounced = self.blobs.provide_stored().await?;
        tracing::info!(
            peer_id = %self.identity.peer_id(),
            api = %self.api_url,
            blobs = reannounced,
            "node ready"
        );
        self.publisher.resume();
        if self.config.worker.enabled {
            // Hardware the operator turned off is not offered either.
            let caps = match &self.capabilities {
                Some(caps) => caps.clone(),
                None => tokio::task::block_in_place(streamgate_media::hw::probe_software),
            };
            tracing::info!(mode = %caps.to_json()["mode"], "volunteering as a worker");
            let volunteer = worker::Worker::new(
                self.config.worker.clone(),
                caps,
                self.identity.clone(),
                self.fetcher.clone(),
                self.blobs.clone(),
                self.presence.clone(),
                self.data_plane.clone(),
                self.work_dir.join("jobs"),
                self.config.transcode.hardware == HardwareUse::Auto,
                self.config.testing.worker_cheat.clone(),
            );
            let inbound = self.inbound_jobs.lock().ok().and_then(|mut i| i.take());
            if let Some(inbound) = inbound {
                tokio::spawn(volunteer.clone().serve(inbound));
            }
            tokio::spawn(volunteer.clone().measure());
            tokio::spawn(worker::advertise(volunteer, self.swarm.clone()));
        } else if let Ok(mut inbound) = self.inbound_jobs.lock() {
            // Offers are refused at once ("this node takes no jobs").
            inbound.take();
        }
        let data_plane_config = &self.config.data_plane;
        if data_plane_config.relay_url.is_empty() && data_plane_config.bootstrap_relay {
            tokio::spawn(relays::adopt_bootstrap_relay(
                self.config.swarm.bootstrap.clone(),
                self.swarm.clone(),
                self.data_plane.clone(),
                self.presence.clone(),
            ));
        }
        // A public address learned from the relay's address discovery is worth publishing
        // at once: peers behind other NATs need it to punch through.
        let (data_plane, presence) = (self.data_plane.clone(), self.presence.clone());
        tokio::spawn(async move {
            let mut addresses = data_plane.address_watcher();
            while iroh::Watcher::updated(&mut addresses).await.is_ok() {
                // Changes come in bursts (relay, then discovered address): let them settle.
                tokio::time::sleep(Duration::from_secs(1)).await;
                presence.publish().await;
            }
        });
        let presence = self.presence.clone();
        let (uploads, publisher) = (self.uploads.clone(), self.publisher.clone());
        // Expired uploads are looked for a few times per expiry period, at least once a minute.
        let sweep_every = Duration::from_secs((uploads.budget().expiry_secs / 4).clamp(1, 60));
        Ok(tokio::spawn(async move {
            let mut refresh = tokio::time::interval(RECORD_REFRESH);
            let mut sweep = tokio::time::interval(sweep_every);
            refresh.tick().await;
            loop {
                tokio::select! {
                    _ = refresh.tick() => presence.publish().await,
                    _ = sweep.tick() => {
                        uploads
                            .remove_expired(&publisher.uploads_in_use(), unix_now())
                            .await;
                    }
                }
            }
        }))
    }

    fn uploads_status(&self) -> UploadsStatus {
        let reserved = self.uploads.reserved().unwrap_or_default();
        let budget = self.uploads.budget();
        UploadsStatus {
            unfinished: reserved.uploads,
            reserved_bytes: reserved.bytes,
            max_unfinished_bytes: budget.max_unfinished_bytes,
            expiry_secs: budget.expiry_secs,
            expired: self.uploads.expired(),
            ended_jobs: self.publisher.ended_jobs(),
            keep_ended_jobs: self.config.transcode.keep_ended_jobs,
        }
    }

    /// What `DATA_DIR/run/node.json` says while the node runs.
    pub fn ready_info(&self) -> NodeReady {
        let record = self.presence.own_record().record;
        NodeReady {
            peer_id: self.identity.peer_id().to_string(),
            node_id: hex::encode(self.identity.public_key()),
            pid: std::process::id(),
            listen_addrs: self.listen_addrs.clone(),
            api_url: self.api_url.clone(),
            data_plane: DataPlaneReady {
                node_id: hex::encode(record.node_key),
                addrs: record.direct_addrs.iter().map(|a| a.to_string()).collect(),
                relay_url: record.relay_url.clone(),
            },
        }
    }

    /// `GET /api/v1/status`.
    pub async fn status(&self) -> Result<NodeStatus, String> {
        let swarm = self.swarm.status().await.map_err(|e| e.to_string())?;
        let (blobs, bytes_stored) = self.blobs.totals().map_err(|e| e.to_string())?;
        Ok(NodeStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            peer_id: self.identity.peer_id().to_string(),
            node_id: hex::encode(self.identity.public_key()),
            blobs,
            bytes_stored,
            bytes_served: self.data_plane.bytes_served(),
            segment_cache_bytes: self.hot.used(),
            bytes_sent_zero_copy: crate::zerocopy::bytes_sent_zero_copy(),
            swarm,
            data_plane_addrs: self
                .presence
                .own_record()
                .record
                .direct_addrs
                .iter()
                .map(|a| a.to_string())
                .collect(),
            reachability: {
                let (mode, public_addr, why) = self.data_plane.own_reachability();
                Reachability {
                    relay_url: self.data_plane.relay_url().map(|u| u.to_string()),
                    mode,
                    public_addr: public_addr.map(|a| a.to_string()),
                    why,
                    peers: self.data_plane.peer_paths(),
                }
            },
            fetch: self.fetcher.status(),
            providers: self.reputation.standings(),
            // Filled in by the HTTP layer, which owns the server.
            http: HttpStatus::default(),
            uploads: self.uploads_status(),
        })
    }

    /// Stops the swarm and the data plane, each within a bound, so the whole shutdown
    /// finishes in a few seconds.
    pub async fn shutdown(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.swarm.shutdown()).await;
        let _ = tokio::time::timeout(Duration::from_millis(1500), self.data_plane.shutdown()).await;
    }
}
