//! Fetching a blob from the swarm: find providers, then pull byte ranges from several of
//! them at once, each range verified against the hash as it arrives.
//!
//! ```text
//!   find providers (gossip hints + DHT) ─▶ resolve signed node records ─▶ rank by standing
//!        │                                                              (banned ones out)
//!        ▼
//!   verified size from the best provider ─▶ split the missing bytes into ranges (queue)
//!        │
//!        ▼
//!   one worker per provider (up to fetch.max_parallel_providers): take a range, get it,
//!   verify 16 KiB group by group into the store. A worker whose provider sends bad bytes,
//!   stalls or dies puts its range back and stops; the others take it over. Verified bytes
//!   are kept, so nothing is fetched twice.
//! ```
//!
//! iroh-blobs' own `Downloader` never splits one blob across providers and has no stall
//! timeout (see `shared/research/iroh-api.md`), which is why ranges are scheduled here.

use std::{
    collections::VecDeque,
    ops::Range,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use iroh::EndpointId;
use iroh_blobs::{
    Hash,
    api::{Store, blobs::BlobStatus, remote::GetProgressItem},
    get::{GetError, fsm::DecodeError},
    protocol::{ChunkRanges, ChunkRangesExt, GetRequest},
};
use libp2p::PeerId;
use streamgate_protocol::{
    ContentHash, SignedNodeRecord,
    reputation::{Failure, ProviderKey},
};
use tokio::{task::JoinSet, time::Instant};

use crate::{node::Node, runfile::unix_now};

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
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
    #[error("local blob store: {0}")]
    Store(String),
    #[error("swarm: {0}")]
    Swarm(#[from] crate::swarm::SwarmError),
}

/// One provider ready to be asked.
#[derive(Debug, Clone)]
struct Candidate {
    key: ProviderKey,
    node: EndpointId,
}

/// How one provider's part of a download ended.
#[derive(Debug)]
struct WorkerEnd {
    candidate: Candidate,
    bytes: u64,
    failure: Option<(Failure, String)>,
}

/// Fetches `hash` into the local store unless it is already complete there, from the
/// providers of `providers_of`: the blob itself, or the manifest a segment belongs to
/// (provider entries exist per manifest, never per segment). Returns the size.
///
/// Cancel-safe in the sense that matters: verified bytes already stored stay stored and a
/// later call resumes from them.
pub async fn fetch(
    node: &Node,
    hash: ContentHash,
    providers_of: ContentHash,
) -> Result<u64, FetchError> {
    let store = node.data_plane.store();
    if let Some(size) = complete_size(store, hash).await? {
        return Ok(size);
    }
    let started = Instant::now();
    let mut deadline = started + node.config.find_timeout();
    let mut tried = 0usize;
    let mut last_error = String::new();
    loop {
        let candidates = find_candidates(node, providers_of, deadline).await?;
        if candidates.is_empty() {
            if Instant::now() >= deadline {
                return Err(if tried == 0 {
                    FetchError::NotFound {
                        hash,
                        waited_secs: started.elapsed().as_secs(),
                    }
                } else {
                    FetchError::ProvidersFailed {
                        hash,
                        tried,
                        last: last_error,
                    }
                });
            }
            // The provider entry may not have spread yet: ask again shortly.
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        tried += candidates.len();
        match download(node, hash, candidates).await {
            Ok(Some(size)) => return Ok(size),
            Ok(None) => {
                // Providers failed part-way; the verified bytes are kept. Look again, with
                // a fresh search window since progress was made.
                deadline = Instant::now() + node.config.find_timeout();
            }
            Err(e) => last_error = e,
        }
        if let Some(size) = complete_size(store, hash).await? {
            return Ok(size);
        }
    }
}

async fn complete_size(store: &Store, hash: ContentHash) -> Result<Option<u64>, FetchError> {
    match store
        .blobs()
        .status(Hash::from_bytes(*hash.as_bytes()))
        .await
    {
        Ok(BlobStatus::Complete { size }) => Ok(Some(size)),
        Ok(_) => Ok(None),
        Err(e) => Err(FetchError::Store(e.to_string())),
    }
}

/// Providers of `hash` with a verified address, best first, banned ones left out.
async fn find_candidates(
    node: &Node,
    hash: ContentHash,
    deadline: Instant,
) -> Result<Vec<Candidate>, FetchError> {
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(500));
    let providers = match tokio::time::timeout(remaining, node.swarm.find_providers(hash)).await {
        Ok(providers) => providers?,
        Err(_) => return Ok(Vec::new()),
    };
    let me = node.identity.public_key();
    let mut keyed: Vec<(ProviderKey, PeerId, Option<SignedNodeRecord>)> = providers
        .into_iter()
        .filter_map(|p| Some((crate::identity::node_key_of(&p.peer)?, p.peer, p.record)))
        .filter(|(key, _, _)| *key != me)
        .collect();
    let ranked = node.rank_providers(keyed.iter().map(|(k, _, _)| *k));
    keyed.retain(|(k, _, _)| ranked.contains(k));
    keyed.sort_by_key(|(k, _, _)| ranked.iter().position(|r| r == k));
    // Resolve a few more than we will use, in case some records are missing.
    keyed.truncate(node.config.fetch.max_parallel_providers * 2);

    let now = unix_now();
    let mut lookups = JoinSet::new();
    for (key, peer, record) in keyed {
        let swarm = node.swarm.clone();
        lookups.spawn(async move {
            let record = match record {
                Some(r) => Some(r),
                None => swarm.find_node_record(peer).await.ok().flatten(),
            };
            (key, record)
        });
    }
    let mut resolved = Vec::new();
    let lookup_deadline = tokio::time::sleep(remaining);
    tokio::pin!(lookup_deadline);
    loop {
        tokio::select! {
            joined = lookups.join_next() => match joined {
                Some(Ok((key, Some(record)))) if record.verify_for(&key, now).is_ok() => {
                    node.data_plane.learn(&record);
                    if let Ok(id) = EndpointId::from_bytes(&key) {
                        resolved.push(Candidate { key, node: id });
                    }
                }
                Some(_) => {}
                None => break,
            },
            _ = &mut lookup_deadline => break,
        }
    }
    resolved.sort_by_key(|c| ranked.iter().position(|r| *r == c.key));
    resolved.truncate(node.config.fetch.max_parallel_providers);
    Ok(resolved)
}

/// Downloads the missing ranges from `candidates`. `Ok(Some(size))` when complete,
/// `Ok(None)` when progress was made but providers ran out, `Err` when nothing was gained.
async fn download(
    node: &Node,
    hash: ContentHash,
    candidates: Vec<Candidate>,
) -> Result<Option<u64>, String> {
    let store = node.data_plane.store().clone();
    let iroh_hash = Hash::from_bytes(*hash.as_bytes());

    // Connect to every candidate at once and ask each for the size, verified by its proof
    // for the last chunk; a dead provider must not delay the live ones.
    let mut probes = JoinSet::new();
    for candidate in candidates {
        let data_plane = node.data_plane.clone();
        let timeout = node.config.stall_timeout();
        probes.spawn(async move {
            let result =
                match tokio::time::timeout(timeout, data_plane.connect(candidate.node)).await {
                    Err(_) => Err((Failure::Unreachable, "connect timed out".to_string())),
                    Ok(Err(e)) => Err((Failure::Unreachable, format!("cannot connect: {e}"))),
                    Ok(Ok(conn)) => match tokio::time::timeout(
                        timeout,
                        iroh_blobs::get::request::get_verified_size(&conn, &iroh_hash),
                    )
                    .await
                    {
                        Ok(Ok((size, _))) => Ok(size),
                        Ok(Err(e)) => Err(classify(&e)),
                        Err(_) => Err((
                            Failure::Stalled,
                            "no answer to the size request".to_string(),
                        )),
                    },
                };
            (candidate, result)
        });
    }
    let mut size = None;
    let mut usable = Vec::new();
    let mut last_error = String::from("no provider answered");
    // Once one provider answered, others get a short grace period to join this round.
    let grace = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(grace);
    loop {
        tokio::select! {
            joined = probes.join_next() => match joined {
                None => break,
                Some(Err(_)) => {}
                Some(Ok((candidate, Ok(verified)))) => {
                    if size.is_none() {
                        grace.as_mut().reset(Instant::now() + Duration::from_millis(100));
                    }
                    if *size.get_or_insert(verified) == verified {
                        usable.push(candidate);
                    } else {
                        // Two verified sizes cannot differ for one hash; ignore the oddity.
                        tracing::warn!("providers disagree on the verified size of {}", hash.short());
                    }
                }
                Some(Ok((candidate, Err((failure, detail))))) => {
                    last_error = detail.clone();
                    node.penalise(candidate.key, failure, &detail);
                }
            },
            _ = &mut grace => break,
        }
    }
    let Some(size) = size else {
        return Err(last_error);
    };

    let present = store
        .blobs()
        .observe(iroh_hash)
        .await
        .map_err(|e| format!("local store: {e}"))?
        .ranges;
    // One provider: one request for everything missing (splitting only adds round trips).
    // Several: ranges they take turns on.
    let range_bytes = if usable.len() == 1 {
        size.max(1)
    } else {
        node.config.fetch.range_bytes
    };
    let queue: VecDeque<Range<u64>> = (0..size.div_ceil(range_bytes).max(1))
        .map(|i| i * range_bytes..((i + 1) * range_bytes).min(size))
        .filter(|r| !present.is_superset(&ChunkRanges::bytes(r.clone())))
        .collect();
    let queue = Arc::new(Mutex::new(queue));
    let mut healthy = usable;
    let mut gained = 0u64;
    // Rounds: a failed worker returns its range to the queue; if the others had already
    // finished, the next round hands it to a provider that is still healthy.
    while queue_len(&queue) > 0 && !healthy.is_empty() {
        let mut workers = JoinSet::new();
        for candidate in healthy.drain(..) {
            let conn = match node.data_plane.connect(candidate.node).await {
                Ok(conn) => conn,
                Err(e) => {
                    node.penalise(
                        candidate.key,
                        Failure::Unreachable,
                        &format!("cannot connect: {e}"),
                    );
                    continue;
                }
            };
            workers.spawn(worker(
                store.clone(),
                iroh_hash,
                conn,
                candidate,
                queue.clone(),
                node.config.stall_timeout(),
            ));
        }
        while let Some(joined) = workers.join_next().await {
            let Ok(end) = joined else { continue };
            gained += end.bytes;
            match end.failure {
                None => {
                    if end.bytes > 0 {
                        node.reward(end.candidate.key);
                    }
                    healthy.push(end.candidate);
                }
                Some((failure, detail)) => {
                    tracing::warn!(
                        provider = %hex::encode(&end.candidate.key[..5]),
                        ?failure,
                        "provider failed for {}: {detail}",
                        hash.short()
                    );
                    last_error = detail.clone();
                    node.penalise(end.candidate.key, failure, &detail);
                    node.data_plane.disconnect(end.candidate.node).await;
                }
            }
        }
    }
    if queue_len(&queue) == 0 {
        return Ok(Some(size));
    }
    if gained > 0 {
        Ok(None)
    } else {
        Err(last_error)
    }
}

fn queue_len(queue: &Mutex<VecDeque<Range<u64>>>) -> usize {
    queue.lock().map(|q| q.len()).unwrap_or(0)
}

fn next_range(queue: &Mutex<VecDeque<Range<u64>>>) -> Option<Range<u64>> {
    queue.lock().ok()?.pop_front()
}

fn give_back(queue: &Mutex<VecDeque<Range<u64>>>, range: Range<u64>) {
    if let Ok(mut q) = queue.lock() {
        q.push_front(range);
    }
}

/// Takes ranges from the queue and fetches them from one provider until the queue is empty
/// or the provider fails.
async fn worker(
    store: Store,
    hash: Hash,
    conn: iroh_blobs::util::connection_pool::ConnectionRef,
    candidate: Candidate,
    queue: Arc<Mutex<VecDeque<Range<u64>>>>,
    stall_timeout: Duration,
) -> WorkerEnd {
    let mut bytes = 0;
    while let Some(range) = next_range(&queue) {
        // A range handed back by a failed worker may be partly verified already.
        let wanted = match store.blobs().observe(hash).await {
            Ok(present) => ChunkRanges::bytes(range.clone()) - &present.ranges,
            Err(_) => ChunkRanges::bytes(range.clone()),
        };
        if wanted.is_empty() {
            continue;
        }
        let request = GetRequest::blob_ranges(hash, wanted);
        let mut progress = std::pin::pin!(
            store
                .remote()
                .execute_get((*conn).clone(), request)
                .stream()
        );
        let mut range_bytes = 0;
        let failure = loop {
            match tokio::time::timeout(stall_timeout, progress.next()).await {
                Err(_) => {
                    break Some((
                        Failure::Stalled,
                        format!("no bytes for {} s", stall_timeout.as_secs()),
                    ));
                }
                Ok(Some(GetProgressItem::Progress(n))) => range_bytes = n,
                Ok(Some(GetProgressItem::Done(stats))) => {
                    range_bytes = stats.payload_bytes_read;
                    break None;
                }
                Ok(Some(GetProgressItem::Error(e))) => break Some(classify(&e)),
                Ok(None) => {
                    break Some((
                        Failure::Unreachable,
                        "request ended without a result".into(),
                    ));
                }
            }
        };
        bytes += range_bytes;
        if let Some(failure) = failure {
            give_back(&queue, range);
            return WorkerEnd {
                candidate,
                bytes,
                failure: Some(failure),
            };
        }
    }
    WorkerEnd {
        candidate,
        bytes,
        failure: None,
    }
}

/// Bytes that fail verification are the provider's fault; anything else may be the network.
fn classify(error: &GetError) -> (Failure, String) {
    let detail = error.to_string();
    match error {
        GetError::Decode {
            source: DecodeError::LeafHashMismatch { .. } | DecodeError::ParentHashMismatch { .. },
            ..
        } => (Failure::Corrupt, format!("verification failed: {detail}")),
        _ => (Failure::Unreachable, detail),
    }
}
