//! Lookups as a bounded service: fetches of content this node does not hold take a slot
//! (node-wide and per client) while they look for providers; the rest wait, up to a bound.
//! Content the node holds never comes here, so it never waits behind a lookup.
//!
//! A slot is held until the fetch's first bytes flow (or it fails): the expensive,
//! unbounded part is finding providers, not moving bytes. A blob no node provided is
//! answered "not found" from memory for `fetch.not_found_ttl_secs`.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use streamgate_api::v1::LookupStatus;
use streamgate_protocol::ContentHash;
use streamgate_swarm::daemon::unix_now;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{config::FetchConfig, services::access::expiring::ExpiringMap};

/// "Not found" answers remembered at once.
const NOT_FOUND_REMEMBERED: usize = 16_384;

tokio::task_local! {
    /// The client address a request came from, set by the HTTP server around each request.
    static CLIENT: IpAddr;
}

/// Runs `work` on behalf of the client at `addr`: lookups it starts count against that
/// client's share.
pub async fn as_client<F: Future>(addr: IpAddr, work: F) -> F::Output {
    CLIENT.scope(client_key(addr), work).await
}

/// Whom a per-client limit counts: an IPv4 address, or an IPv6 /64 (one host is usually
/// given a whole /64).
pub fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
        v4 => v4,
    }
}

/// The client of the request being handled, if any (internal work has none).
pub fn current_client() -> Option<IpAddr> {
    CLIENT.try_with(|c| *c).ok()
}

#[derive(Debug, Default)]
struct Counters {
    started: AtomicU64,
    joined: AtomicU64,
    not_found_remembered: AtomicU64,
    refused: AtomicU64,
}

#[derive(Debug)]
pub struct Lookups {
    config: FetchConfig,
    slots: Arc<Semaphore>,
    per_client: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
    waiting: AtomicUsize,
    in_flight: Arc<AtomicUsize>,
    not_found: Mutex<ExpiringMap<ContentHash, ()>>,
    counters: Counters,
}

/// A fetch's place: waiting for a slot, not yet counted as waiting once dropped.
#[derive(Debug)]
pub struct Ticket {
    lookups: Arc<Lookups>,
    client: Option<IpAddr>,
}

/// A slot, held until dropped.
#[derive(Debug)]
pub struct Slot {
    _node: OwnedSemaphorePermit,
    _client: Option<OwnedSemaphorePermit>,
    in_flight: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Lookups {
    pub fn new(config: FetchConfig) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(config.max_lookups.max(1))),
            per_client: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
            in_flight: Arc::new(AtomicUsize::new(0)),
            not_found: Mutex::new(ExpiringMap::new(NOT_FOUND_REMEMBERED)),
            counters: Counters::default(),
            config,
        }
    }

    /// Whether `hash` was not found moments ago (and counts the answer from memory).
    pub fn recently_not_found(&self, hash: &ContentHash) -> bool {
        let remembered = self
            .not_found
            .lock()
            .is_ok_and(|m| m.get(hash, unix_now()).is_some());
        if remembered {
            self.counters
                .not_found_remembered
                .fetch_add(1, Ordering::Relaxed);
        }
        remembered
    }

    pub fn remember_not_found(&self, hash: ContentHash) {
        let now = unix_now();
        if let Ok(mut map) = self.not_found.lock() {
            // A full table of live entries just stops remembering more.
            let _ = map.insert(hash, (), now + self.config.not_found_ttl_secs, now);
        }
    }

    /// Counts a request that joined a fetch already in flight.
    pub fn joined(&self) {
        self.counters.joined.fetch_add(1, Ordering::Relaxed);
    }

    /// A place in the queue for a new fetch by the current client, or `None` when as many
    /// wait as allowed.
    pub fn enqueue(self: &Arc<Self>) -> Option<Ticket> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.config.max_lookups_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Ticket {
            lookups: self.clone(),
            client: current_client(),
        })
    }

    fn client_semaphore(&self, client: IpAddr) -> Option<Arc<Semaphore>> {
        let mut per_client = self.per_client.lock().ok()?;
        // Semaphores nobody holds or waits on are dropped before the table grows.
        if per_client.len() >= 4096 {
            per_client.retain(|_, s| Arc::strong_count(s) > 1);
        }
        Some(
            per_client
                .entry(client)
                .or_insert_with(|| {
                    Arc::new(Semaphore::new(self.config.max_lookups_per_client.max(1)))
                })
                .clone(),
        )
    }

    pub fn status(&self) -> LookupStatus {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LookupStatus {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            started: read(&self.counters.started),
            joined: read(&self.counters.joined),
            not_found_remembered: read(&self.counters.not_found_remembered),
            refused: read(&self.counters.refused),
            max_lookups: self.config.max_lookups,
            max_lookups_per_client: self.config.max_lookups_per_client,
            max_lookups_waiting: self.config.max_lookups_waiting,
            not_found_ttl_secs: self.config.not_found_ttl_secs,
        }
    }
}

impl Ticket {
    /// Waits for the client's share, then for a node-wide slot (both first come, first
    /// served).
    pub async fn slot(self) -> Option<Slot> {
        let lookups = &self.lookups;
        let client = match self.client.and_then(|c| lookups.client_semaphore(c)) {
            Some(semaphore) => Some(semaphore.acquire_owned().await.ok()?),
            None => None,
        };
        let node = lookups.slots.clone().acquire_owned().await.ok()?;
        lookups.in_flight.fetch_add(1, Ordering::Relaxed);
        lookups.counters.started.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            _node: node,
            _client: client,
            in_flight: lookups.in_flight.clone(),
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.lookups.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_lookups: usize, per_client: usize, waiting: usize) -> FetchConfig {
        FetchConfig {
            max_lookups,
            max_lookups_per_client: per_client,
            max_lookups_waiting: waiting,
            ..FetchConfig::default()
        }
    }

    #[tokio::test]
    async fn slots_are_capped_node_wide_and_per_client() {
        let lookups = Arc::new(Lookups::new(config(3, 2, 10)));
        let one: IpAddr = "192.0.2.1".parse().expect("ip");
        let two: IpAddr = "192.0.2.2".parse().expect("ip");
        let a = as_client(one, async { lookups.enqueue().expect("room").slot().await }).await;
        let b = as_client(one, async { lookups.enqueue().expect("room").slot().await }).await;
        assert!(a.is_some() && b.is_some());
        // The client's share is used up; another client still gets the last slot.
        let third = as_client(one, async { lookups.enqueue().expect("room") }).await;
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), third.slot());
        assert!(waiting.await.is_err(), "over the client's share it waits");
        let c = as_client(two, async { lookups.enqueue().expect("room").slot().await }).await;
        assert!(c.is_some());
        assert_eq!(lookups.status().in_flight, 3);
        // The node is full now: even internal work (no client) waits.
        let internal = lookups.enqueue().expect("room");
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), internal.slot());
        assert!(waiting.await.is_err());
        drop(a);
        assert!(lookups.enqueue().expect("room").slot().await.is_some());
        assert_eq!(
            lookups.status().waiting,
            0,
            "timed-out tickets left the queue"
        );
    }

    #[test]
    fn waiting_is_bounded_and_not_found_is_remembered() {
        let lookups = Arc::new(Lookups::new(config(1, 1, 2)));
        let first = lookups.enqueue().expect("room");
        let second = lookups.enqueue().expect("room");
        assert!(
            lookups.enqueue().is_none(),
            "the third waits over the bound"
        );
        assert_eq!(lookups.status().refused, 1);
        drop((first, second));
        assert!(lookups.enqueue().is_some());

        let hash = ContentHash::of(b"nowhere");
        assert!(!lookups.recently_not_found(&hash));
        lookups.remember_not_found(hash);
        assert!(lookups.recently_not_found(&hash));
        assert_eq!(lookups.status().not_found_remembered, 1);
    }

    #[test]
    fn an_ipv6_64_is_one_client() {
        let a: IpAddr = "2001:db8::1".parse().expect("ip");
        let b: IpAddr = "2001:db8::ffff:2".parse().expect("ip");
        assert_eq!(client_key(a), client_key(b));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert_eq!(
            client_key(mapped),
            "192.0.2.1".parse::<IpAddr>().expect("ip")
        );
    }
}
