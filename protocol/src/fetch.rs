//! The fetcher's plan for one blob: which byte ranges to ask which provider for, when to
//! give up on one, and when the blob is complete, as a state machine without I/O.
//!
//! ```text
//!            ┌──────────── Event (providers found, connected, size proven, ───────────┐
//!            │              bytes verified, request done/failed) + now                │
//!            ▼                                                                        │
//!   FetchPlan::handle / handle_timeout ──▶ poll_action ──▶ Action ──▶ driver (I/O) ──┘
//!                                         poll_timeout ──▶ when to call handle_timeout
//! ```
//!
//! - Providers are used best first, at most `max_providers` at once; each is connected
//!   and, unless a signed manifest already states the size, proves the blob's size (a
//!   verified request for the last chunk) before it is asked for bytes.
//! - The missing bytes are cut into ranges of `range_bytes` on a fixed grid, the range a
//!   reader wants first at the head of the queue. A provider takes its share of the queue
//!   (the queue divided by the providers in play), contiguous ranges as one request, and
//!   keeps up to [`PIPELINE`] requests in flight: one provider alone downloads in one
//!   request, several split the blob between them.
//! - A request that sends nothing for `stall_timeout` is cancelled; a provider whose
//!   request fails (unreachable, stalled, bytes that fail verification) is judged, used no
//!   more for this blob, and the unverified rest of its ranges goes back to the front of
//!   the queue. Verified bytes are never asked for again.
//! - Endgame: when the queue is empty and a provider is idle, it takes the second half of
//!   the largest range still in flight, so one slow provider cannot hold up the end.
//! - No provider at all, or none left: look providers up again (skipping cached answers
//!   once some failed), every [`LOOKUP_RETRY`], until `find_timeout` passes without
//!   progress.
//!
//! Time is an input (`now`), so every rule is tested in virtual time.

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    ops::Range,
    time::{Duration, Instant},
};

use crate::reputation::{Failure, ProviderKey};

/// iroh-blobs verifies in groups of 16 KiB: ranges are cut on this grid.
pub const CHUNK_GROUP: u64 = 16 * 1024;
/// Requests kept in flight per provider.
pub const PIPELINE: usize = 2;
/// Pause before asking for providers again after an empty answer.
pub const LOOKUP_RETRY: Duration = Duration::from_millis(500);
/// The endgame splits a range only when each half keeps at least this much.
const MIN_STEAL_HALF: u64 = 4 * CHUNK_GROUP;

/// How a plan behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanConfig {
    /// Providers used at once.
    pub max_providers: usize,
    /// Bytes per range request (a multiple of [`CHUNK_GROUP`]).
    pub range_bytes: u64,
    /// A request or connection with no progress for this long is abandoned.
    pub stall_timeout: Duration,
    /// Give up when no provider made progress for this long.
    pub find_timeout: Duration,
}

/// What is known of the blob's size before any provider is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeHint {
    /// Nothing: the first provider proves it.
    Unknown,
    /// Stated by a signed manifest: providers are asked for bytes at once, and a
    /// provider that disagrees makes the plan prove the size instead.
    Claimed(u64),
}

/// Names one range request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// What happened, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The lookup found these providers (best first; may arrive several times per lookup).
    Providers(Vec<ProviderKey>),
    /// The lookup found providers this node will not use (banned for earlier failures).
    Excluded { count: usize, detail: String },
    /// The lookup asked for has ended.
    LookupDone,
    /// A provider asked with `Probe { prove_size: false }` is connected.
    Connected { provider: ProviderKey },
    /// A provider proved the blob's size.
    SizeProven { provider: ProviderKey, size: u64 },
    /// Connecting to a provider, or its size proof, failed.
    ProbeFailed {
        provider: ProviderKey,
        failure: Failure,
        detail: String,
    },
    /// Every byte of the request's range below `verified_to` is verified and stored.
    Progress {
        request: RequestId,
        verified_to: u64,
    },
    /// The request's whole range is verified and stored.
    RequestDone { request: RequestId },
    RequestFailed {
        request: RequestId,
        failure: Failure,
        detail: String,
    },
    /// The provider's answer states another size than the one the request was made for.
    SizeDisagrees { request: RequestId, stated: u64 },
}

/// What the driver should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Find providers; `refresh` skips cached answers (providers from them failed).
    Lookup {
        refresh: bool,
    },
    /// Connect to a provider; with `prove_size`, also ask it to prove the size.
    Probe {
        provider: ProviderKey,
        prove_size: bool,
    },
    /// Fetch `range` from a connected provider, for a blob of `size` bytes.
    Get {
        request: RequestId,
        provider: ProviderKey,
        range: Range<u64>,
        size: u64,
    },
    /// Stop a request; no more events are wanted for it.
    Cancel {
        request: RequestId,
    },
    Penalise {
        provider: ProviderKey,
        failure: Failure,
        detail: String,
    },
    Reward {
        provider: ProviderKey,
    },
}

/// How the plan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Complete {
        size: u64,
    },
    /// No provider was ever found.
    NotFound {
        waited: Duration,
    },
    /// Providers were found but none could deliver.
    ProvidersFailed {
        tried: usize,
        last: String,
    },
    /// The size a manifest claimed is not the size the providers prove.
    WrongSize {
        claimed: u64,
        proven: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Known, not used yet.
    Spare,
    /// Connecting (and proving the size) since then.
    Probing(Instant),
    Ready,
    /// Used no more for this blob.
    Failed,
}

#[derive(Debug, Clone)]
struct Request {
    provider: ProviderKey,
    range: Range<u64>,
    /// Where the request now ends: the endgame may hand the tail to another provider.
    end: u64,
    verified_to: u64,
    last_progress: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    InFlight {
        refresh: bool,
    },
    /// No lookup running; the next one not before this time.
    Idle(Option<Instant>),
}

/// The plan for fetching one blob. See the module docs.
#[derive(Debug)]
pub struct FetchPlan {
    config: PlanConfig,
    started: Instant,
    /// Fail when nothing is active at this time; moved on by every bit of progress.
    find_deadline: Instant,
    size: Option<u64>,
    size_proven: bool,
    claimed: Option<u64>,
    first_wanted: u64,
    /// Verified bytes, sorted and disjoint: what was present at the start plus every
    /// request's verified part.
    verified: Vec<Range<u64>>,
    queue: VecDeque<Range<u64>>,
    providers: Vec<(ProviderKey, Slot)>,
    requests: BTreeMap<RequestId, Request>,
    next_request: u64,
    lookup: Lookup,
    /// Providers the current lookup added, and those it found but may not use.
    found_this_lookup: usize,
    excluded_this_lookup: usize,
    /// Some lookup found only excluded providers: the next one skips the cache.
    excluded_seen: bool,
    tried: usize,
    last_error: String,
    rewarded: HashSet<ProviderKey>,
    actions: VecDeque<Action>,
    outcome: Option<Outcome>,
}

impl FetchPlan {
    /// A plan for a blob of which the byte ranges `present` are already verified locally.
    /// Bytes from `first_wanted` on are fetched first (where a reader starts).
    pub fn new(
        config: PlanConfig,
        size: SizeHint,
        present: Vec<Range<u64>>,
        first_wanted: u64,
        now: Instant,
    ) -> Self {
        let mut plan = Self {
            find_deadline: now + config.find_timeout,
            config,
            started: now,
            size: None,
            size_proven: false,
            claimed: None,
            first_wanted,
            verified: Vec::new(),
            queue: VecDeque::new(),
            providers: Vec::new(),
            requests: BTreeMap::new(),
            next_request: 0,
            lookup: Lookup::Idle(None),
            found_this_lookup: 0,
            excluded_this_lookup: 0,
            excluded_seen: false,
            tried: 0,
            last_error: String::new(),
            rewarded: HashSet::new(),
            actions: VecDeque::new(),
            outcome: None,
        };
        for range in present {
            plan.add_verified(range);
        }
        if let SizeHint::Claimed(size) = size {
            plan.claimed = Some(size);
            plan.set_size(size);
        }
        plan.step(now);
        plan
    }

    /// The blob's size, once claimed or proven.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Whether the size was proven by a provider (not only claimed).
    pub fn size_proven(&self) -> bool {
        self.size_proven
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        let stall = self.config.stall_timeout;
        let requests = self.requests.values().map(|r| r.last_progress + stall);
        let probes = self.providers.iter().filter_map(|(_, slot)| match slot {
            Slot::Probing(since) => Some(*since + stall),
            _ => None,
        });
        let lookup = match self.lookup {
            Lookup::Idle(Some(at)) => Some(at),
            _ => None,
        };
        let deadline = (!self.is_active()).then_some(self.find_deadline);
        requests.chain(probes).chain(lookup).chain(deadline).min()
    }

    pub fn handle(&mut self, event: Event, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        match event {
            Event::Providers(keys) => {
                for key in keys {
                    if !self.providers.iter().any(|(k, _)| *k == key) {
                        self.providers.push((key, Slot::Spare));
                        self.found_this_lookup += 1;
                    }
                }
            }
            Event::Excluded { count, detail } => {
                self.excluded_this_lookup += count;
                self.last_error = detail;
            }
            Event::LookupDone => {
                let refreshed = self.lookup == Lookup::InFlight { refresh: true };
                if self.found_this_lookup == 0
                    && self.excluded_this_lookup > 0
                    && refreshed
                    && !self.is_active()
                {
                    // Even a fresh lookup finds only providers that may not be used: no
                    // point in waiting out the find timeout.
                    self.end(Outcome::ProvidersFailed {
                        tried: self.tried + self.excluded_this_lookup,
                        last: self.last_error.clone(),
                    });
                    return;
                }
                if self.excluded_this_lookup > 0 {
                    self.excluded_seen = true;
                }
                let retry = (self.found_this_lookup == 0).then_some(now + LOOKUP_RETRY);
                self.lookup = Lookup::Idle(retry);
            }
            Event::Connected { provider } => {
                if matches!(self.slot(&provider), Some(Slot::Probing(_))) {
                    if self.size.is_some() {
                        self.set_slot(provider, Slot::Ready);
                    } else {
                        // The claimed size was dropped meanwhile: have it proven.
                        self.set_slot(provider, Slot::Probing(now));
                        self.actions.push_back(Action::Probe {
                            provider,
                            prove_size: true,
                        });
                    }
                }
            }
            Event::SizeProven { provider, size } => self.on_size_proven(provider, size),
            Event::ProbeFailed {
                provider,
                failure,
                detail,
            } => {
                if matches!(self.slot(&provider), Some(Slot::Probing(_) | Slot::Ready)) {
                    self.fail_provider(provider, failure, detail);
                }
            }
            Event::Progress {
                request,
                verified_to,
            } => self.on_progress(request, verified_to, now),
            Event::RequestDone { request } => {
                if let Some(r) = self.requests.remove(&request) {
                    // The provider sent its whole range, even a tail the endgame gave away.
                    self.add_verified(r.range.clone());
                    self.find_deadline = now + self.config.find_timeout;
                    self.finish_request(r, true);
                    self.drop_redundant();
                }
            }
            Event::RequestFailed {
                request,
                failure,
                detail,
            } => {
                if let Some(r) = self.requests.get(&request) {
                    let provider = r.provider;
                    self.fail_provider(provider, failure, detail);
                }
            }
            Event::SizeDisagrees { request, stated } => {
                let Some(r) = self.requests.get(&request) else {
                    return;
                };
                let provider = r.provider;
                if self.size_proven {
                    // The size is proven: a provider stating another one lies.
                    let detail = format!(
                        "stated {stated} bytes; the proven size is {}",
                        self.size.unwrap_or(0)
                    );
                    self.fail_provider(provider, Failure::Corrupt, detail);
                } else {
                    self.unclaim_size();
                }
            }
        }
        self.step(now);
    }

    /// Abandons what stalled and retries what waited.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        let stall = self.config.stall_timeout;
        let stalled: Vec<ProviderKey> = self
            .requests
            .values()
            .filter(|r| now >= r.last_progress + stall)
            .map(|r| r.provider)
            .collect();
        for provider in stalled {
            let detail = format!("no bytes for {} ms", stall.as_millis());
            self.fail_provider(provider, Failure::Stalled, detail);
        }
        let slow_probes: Vec<ProviderKey> = self
            .providers
            .iter()
            .filter_map(|(key, slot)| match slot {
                Slot::Probing(since) if now >= *since + stall => Some(*key),
                _ => None,
            })
            .collect();
        for provider in slow_probes {
            let detail = format!("no answer to connect within {} ms", stall.as_millis());
            self.fail_provider(provider, Failure::Unreachable, detail);
        }
        self.step(now);
    }

    fn slot(&self, key: &ProviderKey) -> Option<Slot> {
        self.providers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, slot)| *slot)
    }

    fn set_slot(&mut self, key: ProviderKey, slot: Slot) {
        if let Some(entry) = self.providers.iter_mut().find(|(k, _)| *k == key) {
            entry.1 = slot;
        }
    }

    /// Providers connecting or connected.
    fn in_play(&self) -> usize {
        self.providers
            .iter()
            .filter(|(_, slot)| matches!(slot, Slot::Probing(_) | Slot::Ready))
            .count()
    }

    fn ready_providers(&self) -> Vec<ProviderKey> {
        self.providers
            .iter()
            .filter(|(_, slot)| *slot == Slot::Ready)
            .map(|(key, _)| *key)
            .collect()
    }

    /// A provider is connected, probing, or has work: the plan is waiting on it.
    fn is_active(&self) -> bool {
        !self.requests.is_empty() || self.in_play() > 0
    }

    fn in_flight(&self, key: &ProviderKey) -> usize {
        self.requests
            .values()
            .filter(|r| r.provider == *key)
            .count()
    }

    fn on_size_proven(&mut self, provider: ProviderKey, size: u64) {
        if !matches!(self.slot(&provider), Some(Slot::Probing(_))) {
            return;
        }
        if let Some(claimed) = self.claimed
            && claimed != size
        {
            self.end(Outcome::WrongSize {
                claimed,
                proven: size,
            });
            return;
        }
        match self.size {
            Some(known) if self.size_proven && known != size => {
                // Two proofs cannot disagree for one hash; distrust the newcomer.
                let detail = format!("proved {size} bytes; another provider proved {known}");
                self.fail_provider(provider, Failure::Corrupt, detail);
                return;
            }
            Some(_) => {}
            None => self.set_size(size),
        }
        self.size_proven = true;
        self.set_slot(provider, Slot::Ready);
    }

    fn on_progress(&mut self, request: RequestId, verified_to: u64, now: Instant) {
        let Some(r) = self.requests.get_mut(&request) else {
            return;
        };
        let verified_to = verified_to.min(r.range.end);
        if verified_to > r.verified_to {
            r.verified_to = verified_to;
            r.last_progress = now;
            self.find_deadline = now + self.config.find_timeout;
        }
        let (start, to, end) = (r.range.start, r.verified_to, r.end);
        if to > start {
            self.add_verified(start..to);
        }
        if to >= end
            && let Some(r) = self.requests.remove(&request)
        {
            // The endgame gave the rest of this range to another provider.
            self.actions.push_back(Action::Cancel { request });
            self.finish_request(r, true);
        }
    }

    /// A request ended without failing; its provider is rewarded once per blob if it
    /// delivered anything.
    fn finish_request(&mut self, request: Request, delivered: bool) {
        if delivered && self.rewarded.insert(request.provider) {
            self.actions.push_back(Action::Reward {
                provider: request.provider,
            });
        }
    }

    /// Judges `provider`, stops its requests and returns their unverified parts to the
    /// front of the queue.
    fn fail_provider(&mut self, provider: ProviderKey, failure: Failure, detail: String) {
        if self.slot(&provider) == Some(Slot::Failed) {
            return;
        }
        self.set_slot(provider, Slot::Failed);
        self.last_error = detail.clone();
        self.actions.push_back(Action::Penalise {
            provider,
            failure,
            detail,
        });
        let ids: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, r)| r.provider == provider)
            .map(|(id, _)| *id)
            .collect();
        // Back to the front in order: the first range is asked for first again.
        for id in ids.into_iter().rev() {
            if let Some(r) = self.requests.remove(&id) {
                self.actions.push_back(Action::Cancel { request: id });
                let rest = r.verified_to.max(r.range.start)..r.end;
                if !rest.is_empty() && self.size.is_some() {
                    self.queue.push_front(rest);
                }
            }
        }
    }

    /// Cancels requests whose remaining bytes others have verified meanwhile.
    fn drop_redundant(&mut self) {
        let redundant: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, r)| {
                let rest = r.verified_to.max(r.range.start)..r.end;
                self.covers(&rest)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in redundant {
            if let Some(r) = self.requests.remove(&id) {
                self.actions.push_back(Action::Cancel { request: id });
                let delivered = r.verified_to > r.range.start;
                self.finish_request(r, delivered);
            }
        }
    }

    /// Whether every byte of `range` is verified.
    fn covers(&self, range: &Range<u64>) -> bool {
        range.is_empty()
            || self
                .verified
                .iter()
                .any(|v| v.start <= range.start && range.end <= v.end)
    }

    /// A provider stated another size than the manifest: forget the claim, stop asking for
    /// bytes, and have the size proven.
    fn unclaim_size(&mut self) {
        self.size = None;
        self.queue.clear();
        let ids: Vec<RequestId> = self.requests.keys().copied().collect();
        for id in ids {
            self.requests.remove(&id);
            self.actions.push_back(Action::Cancel { request: id });
        }
        for provider in self.ready_providers() {
            self.set_slot(provider, Slot::Spare);
        }
    }

    fn set_size(&mut self, size: u64) {
        self.size = Some(size);
        self.queue = self.missing_ranges(size);
    }

    /// The bytes of `0..size` not verified yet, cut on the range grid, the part from
    /// `first_wanted` on first.
    fn missing_ranges(&self, size: u64) -> VecDeque<Range<u64>> {
        let grid = self.config.range_bytes.max(CHUNK_GROUP);
        let wanted = (self.first_wanted.min(size) / CHUNK_GROUP) * CHUNK_GROUP;
        let mut pieces = Vec::new();
        let mut at = 0;
        for hole in complement(&self.verified, size) {
            at = at.max(hole.start);
            while at < hole.end {
                let mut end = ((at / grid + 1) * grid).min(hole.end);
                // Start a piece where the reader starts, so it gets its bytes first.
                if at < wanted && wanted < end {
                    end = wanted;
                }
                pieces.push(at..end);
                at = end;
            }
        }
        let (later, earlier): (Vec<_>, Vec<_>) =
            pieces.into_iter().partition(|r| r.start >= wanted);
        later.into_iter().chain(earlier).collect()
    }

    fn add_verified(&mut self, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        self.verified.push(range);
        self.verified.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<u64>> = Vec::with_capacity(self.verified.len());
        for r in self.verified.drain(..) {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        self.verified = merged;
    }

    fn is_verified(&self, size: u64) -> bool {
        complement(&self.verified, size).is_empty()
    }

    fn end(&mut self, outcome: Outcome) {
        let ids: Vec<RequestId> = self.requests.keys().copied().collect();
        for id in ids {
            self.actions.push_back(Action::Cancel { request: id });
        }
        self.requests.clear();
        self.outcome = Some(outcome);
    }

    /// Decides what to do next after anything happened.
    fn step(&mut self, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        if let Some(size) = self.size
            && self.requests.is_empty()
            && self.queue.is_empty()
            && (self.size_proven || self.claimed.is_some())
            && self.is_verified(size)
        {
            self.end(Outcome::Complete { size });
            return;
        }
        self.start_probes(now);
        if self.size.is_some() {
            self.assign_work(now);
        }
        if !self.is_active() {
            self.need_providers(now);
        }
    }

    fn start_probes(&mut self, now: Instant) {
        let mut active = self.in_play();
        let prove_size = self.size.is_none();
        for i in 0..self.providers.len() {
            if active >= self.config.max_providers {
                break;
            }
            if self.providers[i].1 == Slot::Spare {
                let provider = self.providers[i].0;
                self.providers[i].1 = Slot::Probing(now);
                self.tried += 1;
                active += 1;
                self.actions.push_back(Action::Probe {
                    provider,
                    prove_size,
                });
            }
        }
    }

    fn assign_work(&mut self, now: Instant) {
        let Some(size) = self.size else { return };
        // Providers that will want work: each takes its share of the queue, as one request
        // where the ranges are contiguous (a request costs a round trip and a store import;
        // one provider alone gets everything in one request, like a plain download).
        let in_play = self.in_play().max(1);
        for provider in self.ready_providers() {
            while self.in_flight(&provider) < PIPELINE {
                let share = self.queue.len().div_ceil(in_play);
                let Some(mut range) = self.queue.pop_front() else {
                    break;
                };
                for _ in 1..share {
                    match self.queue.front() {
                        Some(next) if next.start == range.end => {
                            range.end = next.end;
                            self.queue.pop_front();
                        }
                        _ => break,
                    }
                }
                self.issue(provider, range, size, now);
            }
            if self.queue.is_empty() && self.in_flight(&provider) == 0 {
                self.steal_for(provider, size, now);
            }
        }
    }

    /// Endgame: hands `provider` the second half of the largest range in flight elsewhere.
    fn steal_for(&mut self, provider: ProviderKey, size: u64, now: Instant) {
        let victim = self
            .requests
            .iter()
            .filter(|(_, r)| r.provider != provider)
            .map(|(id, r)| (*id, r.end - r.verified_to.max(r.range.start)))
            .max_by_key(|(_, remaining)| *remaining);
        let Some((id, remaining)) = victim else {
            return;
        };
        if remaining < 2 * MIN_STEAL_HALF {
            return;
        }
        let Some(r) = self.requests.get_mut(&id) else {
            return;
        };
        let from = r.verified_to.max(r.range.start);
        let mid = (from + remaining / 2).div_ceil(CHUNK_GROUP) * CHUNK_GROUP;
        if mid <= from || mid >= r.end {
            return;
        }
        let tail = mid..r.end;
        r.end = mid;
        self.issue(provider, tail, size, now);
    }

    fn issue(&mut self, provider: ProviderKey, range: Range<u64>, size: u64, now: Instant) {
        let request = RequestId(self.next_request);
        self.next_request += 1;
        self.requests.insert(
            request,
            Request {
                provider,
                range: range.clone(),
                end: range.end,
                verified_to: range.start,
                last_progress: now,
            },
        );
        self.actions.push_back(Action::Get {
            request,
            provider,
            range,
            size,
        });
    }

    /// Nothing is active: look providers up again, or give up.
    fn need_providers(&mut self, now: Instant) {
        if now >= self.find_deadline {
            let outcome = if self.tried == 0 && !self.excluded_seen {
                Outcome::NotFound {
                    waited: now.saturating_duration_since(self.started),
                }
            } else {
                Outcome::ProvidersFailed {
                    tried: self.tried,
                    last: self.last_error.clone(),
                }
            };
            self.end(outcome);
            return;
        }
        if let Lookup::Idle(next) = self.lookup
            && next.is_none_or(|at| now >= at)
        {
            let refresh = self.tried > 0 || self.excluded_seen;
            self.lookup = Lookup::InFlight { refresh };
            self.found_this_lookup = 0;
            self.excluded_this_lookup = 0;
            self.actions.push_back(Action::Lookup { refresh });
        }
    }
}

/// The parts of `0..size` that `verified` (sorted, disjoint) does not cover.
fn complement(verified: &[Range<u64>], size: u64) -> Vec<Range<u64>> {
    let mut holes = Vec::new();
    let mut at = 0;
    for r in verified {
        if r.start > at {
            holes.push(at..r.start.min(size));
        }
        at = at.max(r.end);
        if at >= size {
            break;
        }
    }
    if at < size {
        holes.push(at..size);
    }
    holes.retain(|h| !h.is_empty());
    holes
}

#[cfg(test)]
mod tests;
