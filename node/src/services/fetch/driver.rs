//! The I/O half of a fetch: carries out the plan's actions over the swarm and iroh, and
//! reports back what happened. All decisions are the plan's (`streamgate_protocol::fetch`).

use std::{collections::HashMap, num::NonZeroU64, ops::Range, sync::Arc, time::Duration};

use iroh::EndpointId;
use iroh_blobs::{
    HashAndFormat,
    get::{
        GetError,
        fsm::{self, BlobContentNext, ConnectedNext, DecodeError, EndBlobNext},
    },
    protocol::{ChunkRanges, ChunkRangesExt, GetRequest},
    util::connection_pool::ConnectionRef,
};
use streamgate_protocol::{
    ContentHash,
    fetch::{Action, Event, FetchPlan, Outcome, PlanConfig, RequestId, SizeHint},
    reputation::{Failure, ProviderKey},
};
use streamgate_swarm::daemon::unix_now;
use tokio::{sync::mpsc, task::JoinSet, time::Instant};

use super::{FetchError, FetchRequest, LiveBlob, Shared};
use crate::{actors::db::Origin, services::blobs::iroh_hash};

/// Rounds of planning per fetch: a second only if the store lost bytes the plan counted.
const MAX_ROUNDS: usize = 3;
/// Progress is reported to the plan at most every this many bytes of a request.
const PROGRESS_EVERY: u64 = 256 * 1024;
/// Items buffered towards the store per range import (iroh's own choice is at most 64).
const IMPORT_BUFFER: usize = 64;

/// Fetches `request.hash` into the store (resuming from what is there) and makes it
/// durable; every verified leaf also goes to `live`.
pub(super) async fn fetch(
    shared: &Arc<Shared>,
    request: FetchRequest,
    live: &Arc<LiveBlob>,
) -> Result<u64, FetchError> {
    let hash = request.hash;
    let store = shared.blobs.store();
    // A temp tag keeps a future garbage collector off the partial blob; the permanent tag
    // is set once it is complete.
    let batch = store
        .blobs()
        .batch()
        .await
        .map_err(|e| FetchError::Store(e.to_string()))?;
    let _pin = batch
        .temp_tag(HashAndFormat::raw(iroh_hash(&hash)))
        .await
        .map_err(|e| FetchError::Store(e.to_string()))?;
    for _ in 0..MAX_ROUNDS {
        let present = shared
            .blobs
            .present(&hash)
            .await
            .map_err(FetchError::Store)?;
        if let Some(size) = present.proven_size
            && covers(&present.ranges, size)
        {
            return store_complete(shared, request).await;
        }
        let hint = match (request.claimed_size, present.proven_size) {
            (_, Some(size)) | (Some(size), None) => SizeHint::Claimed(size),
            (None, None) => SizeHint::Unknown,
        };
        let outcome = Round::new(shared, request, live)
            .run(hint, present.ranges)
            .await;
        match outcome {
            Outcome::Complete { .. } => match store_complete(shared, request).await {
                Ok(size) => return Ok(size),
                // Bytes the plan counted did not reach the store: plan again from what did.
                Err(e) => tracing::warn!("{} incomplete after its plan: {e}", hash.short()),
            },
            Outcome::NotFound { waited } => {
                return Err(FetchError::NotFound {
                    hash,
                    waited_secs: waited.as_secs(),
                });
            }
            Outcome::ProvidersFailed { tried, last } => {
                return Err(FetchError::ProvidersFailed { hash, tried, last });
            }
            Outcome::WrongSize { claimed, proven } => {
                return Err(FetchError::WrongSize {
                    hash,
                    claimed,
                    proven,
                });
            }
        }
    }
    Err(FetchError::Store(format!(
        "{} is still incomplete after {MAX_ROUNDS} rounds",
        hash.short()
    )))
}

async fn store_complete(shared: &Shared, request: FetchRequest) -> Result<u64, FetchError> {
    shared
        .blobs
        .finish_storing(request.hash, Origin::Fetched, request.provide)
        .await
        .map_err(|e| FetchError::Store(e.to_string()))
}

fn covers(ranges: &[Range<u64>], size: u64) -> bool {
    size == 0 || ranges.iter().any(|r| r.start == 0 && r.end >= size)
}

/// One plan, carried out.
struct Round<'a> {
    shared: &'a Arc<Shared>,
    request: FetchRequest,
    live: &'a Arc<LiveBlob>,
    events: mpsc::Sender<Event>,
    inbox: mpsc::Receiver<Event>,
    tasks: JoinSet<()>,
    gets: HashMap<RequestId, tokio::task::AbortHandle>,
}

impl<'a> Round<'a> {
    fn new(shared: &'a Arc<Shared>, request: FetchRequest, live: &'a Arc<LiveBlob>) -> Self {
        let (events, inbox) = mpsc::channel(1024);
        Self {
            shared,
            request,
            live,
            events,
            inbox,
            tasks: JoinSet::new(),
            gets: HashMap::new(),
        }
    }

    async fn run(mut self, hint: SizeHint, present: Vec<Range<u64>>) -> Outcome {
        let config = &self.shared.config;
        let mut plan = FetchPlan::new(
            PlanConfig {
                max_providers: config.max_parallel_providers,
                range_bytes: config.range_bytes,
                stall_timeout: config.stall_timeout(),
                find_timeout: config.find_timeout(),
            },
            hint,
            present,
            self.request.first_wanted,
            Instant::now().into_std(),
        );
        let mut told_size = None;
        loop {
            while let Some(action) = plan.poll_action() {
                self.act(action);
            }
            if let Some(size) = plan.size()
                && told_size != Some((size, plan.size_proven()))
            {
                told_size = Some((size, plan.size_proven()));
                self.live.set_size(size, plan.size_proven());
            }
            if let Some(outcome) = plan.outcome() {
                let outcome = outcome.clone();
                self.tasks.abort_all();
                return outcome;
            }
            let wake = plan
                .poll_timeout()
                .map(Instant::from_std)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                event = self.inbox.recv() => {
                    if let Some(event) = event {
                        plan.handle(event, Instant::now().into_std());
                    }
                }
                _ = tokio::time::sleep_until(wake) => plan.handle_timeout(Instant::now().into_std()),
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
            }
        }
    }

    fn act(&mut self, action: Action) {
        let shared = self.shared.clone();
        let events = self.events.clone();
        let hash = self.request.hash;
        match action {
            Action::Lookup { refresh } => {
                let of = self.request.providers_of;
                let known = self.request.known_provider.filter(|_| !refresh);
                self.tasks.spawn(async move {
                    if let Some(key) = known {
                        let _ = events.send(Event::Providers(vec![key])).await;
                    }
                    lookup(&shared, of, refresh, &events).await
                });
            }
            Action::Probe {
                provider,
                prove_size,
            } => {
                self.tasks.spawn(async move {
                    let event = probe(&shared, hash, provider, prove_size).await;
                    let _ = events.send(event).await;
                });
            }
            Action::Get {
                request,
                provider,
                range,
                size,
            } => {
                let live = self.live.clone();
                let handle = self.tasks.spawn(async move {
                    let event = get(
                        &shared, hash, request, provider, range, size, &live, &events,
                    )
                    .await;
                    let _ = events.send(event).await;
                });
                self.gets.insert(request, handle);
            }
            Action::Cancel { request } => {
                if let Some(handle) = self.gets.remove(&request) {
                    handle.abort();
                }
            }
            Action::Penalise {
                provider,
                failure,
                detail,
            } => {
                self.shared.reputation.penalise(provider, failure, &detail);
                if let Ok(node) = EndpointId::from_bytes(&provider) {
                    let data_plane = self.shared.data_plane.clone();
                    self.tasks
                        .spawn(async move { data_plane.disconnect(node).await });
                }
            }
            Action::Reward { provider } => self.shared.reputation.reward(provider),
        }
    }
}

/// Finds providers of `of` and resolves their signed node records, telling the plan about
/// each as soon as its address is known.
async fn lookup(shared: &Shared, of: ContentHash, refresh: bool, events: &mpsc::Sender<Event>) {
    let answer = match tokio::time::timeout(
        shared.config.find_timeout(),
        shared.swarm.find_providers(of, refresh),
    )
    .await
    {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            tracing::warn!("provider lookup: {e}");
            let _ = events.send(Event::LookupDone).await;
            return;
        }
        Err(_) => {
            let _ = events.send(Event::LookupDone).await;
            return;
        }
    };
    let counter = if answer.from_cache {
        &shared.counters.lookups_cached
    } else {
        &shared.counters.lookups_dht
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = unix_now();
    let candidates: Vec<_> = answer
        .providers
        .into_iter()
        .filter_map(|p| Some((streamgate_swarm::identity::node_key_of(&p.peer)?, p)))
        .filter(|(key, _)| *key != shared.me)
        .collect();
    let ranked = shared.reputation.rank(candidates.iter().map(|(k, _)| *k));
    let excluded = candidates.len() - ranked.len();
    if excluded > 0 {
        let detail = format!(
            "{excluded} provider(s) found are banned here for earlier failures (see the provider standings in `streamgate status`)"
        );
        let _ = events
            .send(Event::Excluded {
                count: excluded,
                detail,
            })
            .await;
    }
    // Providers whose record came with the answer go to the plan at once, best first; the
    // others as their record is found in the DHT.
    let mut ready = Vec::new();
    let mut lookups = JoinSet::new();
    for key in &ranked {
        let Some((_, provider)) = candidates.iter().find(|(k, _)| k == key) else {
            continue;
        };
        match &provider.record {
            Some(record) if record.verify_for(key, now).is_ok() => {
                shared.data_plane.learn(record);
                ready.push(*key);
            }
            _ => {
                let (swarm, peer, key) = (shared.swarm.clone(), provider.peer, *key);
                lookups.spawn(async move { (key, swarm.find_node_record(peer).await) });
            }
        }
    }
    if !ready.is_empty() {
        let _ = events.send(Event::Providers(ready)).await;
    }
    let deadline = tokio::time::sleep(shared.config.find_timeout());
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            joined = lookups.join_next() => match joined {
                Some(Ok((key, Ok(Some(record))))) if record.verify_for(&key, now).is_ok() => {
                    shared.data_plane.learn(&record);
                    let _ = events.send(Event::Providers(vec![key])).await;
                }
                Some(_) => {}
                None => break,
            },
            _ = &mut deadline => break,
        }
    }
    let _ = events.send(Event::LookupDone).await;
}

/// A pooled connection to `provider`, whose address a lookup taught the data plane.
async fn connect(
    shared: &Shared,
    provider: &ProviderKey,
) -> Result<ConnectionRef, (Failure, String)> {
    let node = EndpointId::from_bytes(provider)
        .map_err(|_| (Failure::Unreachable, "not an Ed25519 node id".to_string()))?;
    shared
        .data_plane
        .connect(node)
        .await
        .map_err(|e| (Failure::Unreachable, e))
}

/// Connects to `provider` and, with `prove_size`, has it prove the blob's size.
async fn probe(
    shared: &Shared,
    hash: ContentHash,
    provider: ProviderKey,
    prove_size: bool,
) -> Event {
    let failed = |failure, detail: String| Event::ProbeFailed {
        provider,
        failure,
        detail,
    };
    let conn = match connect(shared, &provider).await {
        Ok(conn) => conn,
        Err((failure, detail)) => return failed(failure, detail),
    };
    if !prove_size {
        return Event::Connected { provider };
    }
    match iroh_blobs::get::request::get_verified_size(&conn, &iroh_hash(&hash)).await {
        Ok((size, _)) => Event::SizeProven { provider, size },
        Err(e) => {
            let (failure, detail) = classify_get(&e);
            failed(failure, detail)
        }
    }
}

/// Fetches `range` from `provider` into the store, verified leaf by leaf, telling `live`
/// about every leaf and the plan about progress.
#[allow(clippy::too_many_arguments)]
async fn get(
    shared: &Shared,
    hash: ContentHash,
    request: RequestId,
    provider: ProviderKey,
    range: Range<u64>,
    size: u64,
    live: &LiveBlob,
    events: &mpsc::Sender<Event>,
) -> Event {
    let failed = |failure, detail: String| Event::RequestFailed {
        request,
        failure,
        detail,
    };
    let conn = match connect(shared, &provider).await {
        Ok(conn) => conn,
        Err((failure, detail)) => return failed(failure, detail),
    };
    let wanted = GetRequest::blob_ranges(iroh_hash(&hash), ChunkRanges::bytes(range.clone()));
    let connected = match fsm::start((*conn).clone(), wanted, Default::default())
        .next()
        .await
    {
        Ok(connected) => connected,
        Err(e) => return failed(Failure::Unreachable, format!("request not sent: {e}")),
    };
    let header = match connected.next().await {
        Ok(ConnectedNext::StartRoot(root)) => root.next(),
        Ok(_) => return failed(Failure::Unreachable, "the answer holds no blob".into()),
        Err(e) => return failed(Failure::Unreachable, format!("no answer: {e}")),
    };
    let (mut content, stated) = match header.next().await {
        Ok(found) => found,
        Err(e) => return failed(Failure::Unreachable, format!("no blob header: {e}")),
    };
    if stated != size {
        return Event::SizeDisagrees { request, stated };
    }
    let Some(nonzero) = NonZeroU64::new(size) else {
        return Event::RequestDone { request };
    };
    let import = match shared
        .blobs
        .store()
        .blobs()
        .import_bao(iroh_hash(&hash), nonzero, IMPORT_BUFFER)
        .await
    {
        Ok(import) => import,
        Err(e) => return failed(Failure::Unreachable, format!("local store: {e}")),
    };
    let mut verified_to = range.start;
    let mut reported = range.start;
    let end = loop {
        match content.next().await {
            BlobContentNext::More((next, Ok(item))) => {
                if let bao_tree::io::BaoContentItem::Leaf(leaf) = &item {
                    live.add(leaf.offset, leaf.data.clone());
                    verified_to = verified_to.max(leaf.offset + leaf.data.len() as u64);
                }
                if import.tx.send(item).await.is_err() {
                    return failed(Failure::Unreachable, "the local store stopped".into());
                }
                if verified_to >= reported + PROGRESS_EVERY {
                    reported = verified_to;
                    let _ = events
                        .send(Event::Progress {
                            request,
                            verified_to,
                        })
                        .await;
                }
                content = next;
            }
            BlobContentNext::More((_, Err(e))) => {
                let (failure, detail) = classify_decode(&e);
                return failed(failure, detail);
            }
            BlobContentNext::Done(end) => break end,
        }
    };
    drop(import.tx);
    match import.rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return failed(Failure::Unreachable, format!("local store: {e}")),
        Err(e) => return failed(Failure::Unreachable, format!("local store: {e}")),
    }
    if let EndBlobNext::Closing(closing) = end.next() {
        let _ = closing.next().await;
    }
    Event::RequestDone { request }
}

/// Bytes that fail verification are the provider's fault; anything else may be the network.
fn classify_decode(error: &DecodeError) -> (Failure, String) {
    let detail = error.to_string();
    match error {
        DecodeError::LeafHashMismatch { .. } | DecodeError::ParentHashMismatch { .. } => {
            (Failure::Corrupt, format!("verification failed: {detail}"))
        }
        _ => (Failure::Unreachable, detail),
    }
}

fn classify_get(error: &GetError) -> (Failure, String) {
    match error {
        GetError::Decode { source, .. } => classify_decode(source),
        other => (Failure::Unreachable, other.to_string()),
    }
}
