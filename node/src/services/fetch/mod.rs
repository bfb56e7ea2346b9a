//! Getting blobs from the swarm: one fetch per hash at a time, shared by everyone who asks,
//! streamed to readers as verified bytes arrive.
//!
//! ```text
//!   open / ensure ──▶ in-flight map (one fetch per hash) ──▶ driver task
//!        ▲                                                    │ FetchPlan (protocol::fetch):
//!        │ LiveBlob: verified leaves ◀── get tasks ◀──────────┤   what to ask whom, when to
//!        │ as they arrive                (iroh, verified,     │   give up on a provider
//!   readers (HTTP bodies)                 into the store)     │
//!                                        probe tasks ◀────────┤ connect, prove the size
//!                                        lookup task ◀────────┘ cached providers / DHT,
//!                                                               signed node records
//! ```
//!
//! The plan decides; the driver ([`driver`]) only does I/O and reports what happened.
//! iroh-blobs' own `Downloader` never splits one blob across providers and has no stall
//! timeout (see `docs/decisions/0002-libp2p-control-iroh-data.md`), which is why ranges are
//! scheduled here.

mod driver;
pub mod live;
pub mod lookups;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use streamgate_api::v1::FetchStatus;
use streamgate_protocol::{ContentHash, reputation::ProviderKey};
use streamgate_swarm::SwarmHandle;

pub use live::{LiveBlob, LiveState};
use lookups::Lookups;

use super::{blobs::Blobs, reputation::Reputation};
use crate::{actors::data_plane::DataPlane, config::FetchConfig};

/// Verified bytes held in memory for readers, across every fetch in flight.
const LIVE_BUDGET_BYTES: u64 = 256 << 20;

/// Why a fetch failed. Cloned to every reader of the same fetch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error(
        "blob {hash} not found: no node in the swarm provides it (searched for {waited_secs} s)"
    )]
    NotFound { hash: ContentHash, waited_secs: u64 },
    #[error("blob {hash}: every provider failed ({tried} tried); last error: {last}")]
    ProvidersFailed {
        hash: ContentHash,
        tried: usize,
        last: String,
    },
    #[error("blob {hash} is {proven} bytes, not the {claimed} its manifest says")]
    WrongSize {
        hash: ContentHash,
        claimed: u64,
        proven: u64,
    },
    #[error(
        "this node is looking for as much content as it allows (config key fetch.max_lookups_waiting); retry shortly"
    )]
    Busy,
    #[error("local blob store: {0}")]
    Store(String),
    #[error("swarm: {0}")]
    Swarm(String),
}

/// What to fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchRequest {
    pub hash: ContentHash,
    /// Whose providers to ask: the blob itself, or the manifest a segment belongs to
    /// (provider entries exist per manifest, never per segment).
    pub providers_of: ContentHash,
    /// The size a signed manifest states, if any: providers are then asked for bytes at
    /// once, without a size proof first.
    pub claimed_size: Option<u64>,
    /// Announce the blob in the DHT once stored (raw blobs; segments are provided through
    /// their manifest).
    pub provide: bool,
    /// Where the first reader starts: those bytes are fetched first.
    pub first_wanted: u64,
    /// A provider known to hold it (its node record already learned by the data plane),
    /// asked before any lookup answers: a job's chunk from its publisher, a job's outputs
    /// from their worker.
    pub known_provider: Option<ProviderKey>,
}

impl FetchRequest {
    /// A raw blob, provided under its own hash.
    pub fn blob(hash: ContentHash) -> Self {
        Self {
            hash,
            providers_of: hash,
            claimed_size: None,
            provide: true,
            first_wanted: 0,
            known_provider: None,
        }
    }
}

/// Where the bytes of a blob come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Complete in the local store.
    Local { size: u64 },
    /// Being fetched; a provider is delivering.
    Live { size: u64, blob: Arc<LiveBlob> },
}

impl Source {
    pub fn size(&self) -> u64 {
        match self {
            Self::Local { size } | Self::Live { size, .. } => *size,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    completed: AtomicU64,
    failed: AtomicU64,
    lookups_cached: AtomicU64,
    lookups_dht: AtomicU64,
}

/// Everything a fetch needs, shared by the driver tasks.
#[derive(Debug)]
struct Shared {
    config: FetchConfig,
    me: ProviderKey,
    blobs: Arc<Blobs>,
    data_plane: DataPlane,
    swarm: SwarmHandle,
    reputation: Arc<Reputation>,
    in_flight: Mutex<HashMap<ContentHash, Arc<LiveBlob>>>,
    live_budget: Arc<AtomicU64>,
    counters: Counters,
    lookups: Arc<Lookups>,
}

/// The fetch service.
#[derive(Debug, Clone)]
pub struct Fetcher {
    shared: Arc<Shared>,
}

impl Fetcher {
    pub fn new(
        config: FetchConfig,
        me: ProviderKey,
        blobs: Arc<Blobs>,
        data_plane: DataPlane,
        swarm: SwarmHandle,
        reputation: Arc<Reputation>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                lookups: Arc::new(Lookups::new(config.clone())),
                config,
                me,
                blobs,
                data_plane,
                swarm,
                reputation,
                in_flight: Mutex::new(HashMap::new()),
                live_budget: Arc::new(AtomicU64::new(0)),
                counters: Counters::default(),
            }),
        }
    }

    /// Where to read `request.hash` from: the local store, or a fetch once a provider
    /// delivers (so the caller can answer with the size and stream the bytes).
    pub async fn open(&self, request: FetchRequest) -> Result<Source, FetchError> {
        if let Some(size) = self.shared.blobs.local_size(&request.hash).await {
            return Ok(Source::Local { size });
        }
        let blob = self.start(request)?;
        match blob.ready().await {
            LiveState::Flowing { size } => Ok(Source::Live { size, blob }),
            LiveState::Stored { size } => Ok(Source::Local { size }),
            LiveState::Failed(e) => Err(e),
            LiveState::Waiting => Err(FetchError::Store("the fetch ended without news".into())),
        }
    }

    /// Makes sure `request.hash` is stored here, fetching it if needed; returns its size.
    pub async fn ensure(&self, request: FetchRequest) -> Result<u64, FetchError> {
        if let Some(size) = self.shared.blobs.local_size(&request.hash).await {
            return Ok(size);
        }
        self.start(request)?.finished().await
    }

    /// Joins the fetch of this hash in flight, or starts one once a lookup slot is free
    /// (see [`lookups`]).
    fn start(&self, request: FetchRequest) -> Result<Arc<LiveBlob>, FetchError> {
        let lookups = &self.shared.lookups;
        if lookups.recently_not_found(&request.hash) {
            return Err(FetchError::NotFound {
                hash: request.hash,
                waited_secs: 0,
            });
        }
        let mut in_flight = self
            .shared
            .in_flight
            .lock()
            .map_err(|_| FetchError::Store("fetch table poisoned".into()))?;
        if let Some(blob) = in_flight.get(&request.hash) {
            lookups.joined();
            return Ok(blob.clone());
        }
        let ticket = lookups.enqueue().ok_or(FetchError::Busy)?;
        let blob = Arc::new(self.new_live(request.hash));
        in_flight.insert(request.hash, blob.clone());
        drop(in_flight);
        let shared = self.shared.clone();
        let live = blob.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let result = match ticket.slot().await {
                Some(slot) => {
                    // The slot is given back once bytes flow: the lookup is over then.
                    let flowing = live.clone();
                    tokio::spawn(async move {
                        flowing.ready().await;
                        drop(slot);
                    });
                    driver::fetch(&shared, request, &live).await
                }
                None => Err(FetchError::Store("the lookup queue closed".into())),
            };
            if let Err(FetchError::NotFound { .. }) = &result {
                shared.lookups.remember_not_found(request.hash);
            }
            match &result {
                Ok(size) => tracing::debug!(
                    hash = %request.hash.short(),
                    size,
                    ms = started.elapsed().as_secs_f64() * 1000.0,
                    "fetched"
                ),
                Err(e) => tracing::debug!(hash = %request.hash.short(), "fetch failed: {e}"),
            }
            let counter = match &result {
                Ok(_) => &shared.counters.completed,
                Err(_) => &shared.counters.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            // Out of the table before readers hear the end: a later request then finds
            // the blob in the store (or starts afresh after a failure).
            if let Ok(mut in_flight) = shared.in_flight.lock() {
                in_flight.remove(&request.hash);
            }
            live.end(result);
        });
        Ok(blob)
    }

    fn new_live(&self, hash: ContentHash) -> LiveBlob {
        LiveBlob::new(hash, self.shared.live_budget.clone(), LIVE_BUDGET_BYTES)
    }

    pub fn status(&self) -> FetchStatus {
        let counters = &self.shared.counters;
        FetchStatus {
            in_flight: self.shared.in_flight.lock().map(|m| m.len()).unwrap_or(0),
            completed: counters.completed.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
            lookups_cached: counters.lookups_cached.load(Ordering::Relaxed),
            lookups_dht: counters.lookups_dht.load(Ordering::Relaxed),
            lookups: self.shared.lookups.status(),
        }
    }
}
