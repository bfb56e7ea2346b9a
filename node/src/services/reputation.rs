//! The standing of every provider this node has fetched from, and of every worker it gave
//! jobs to: a bounded [`ProviderBook`] each in memory, each change persisted so bans survive
//! restarts.

use std::sync::{Arc, Mutex};

use streamgate_api::v1::ProviderStanding;
use streamgate_protocol::reputation::{Failure, ProviderBook, ProviderKey, Standing};
use streamgate_swarm::{daemon::unix_now, identity::peer_label};

use crate::actors::db::{DbError, NodeDb};

/// Providers whose standing is remembered (in memory and in the database).
const PROVIDER_BOOK_CAPACITY: usize = 4096;

/// Whose standing a book keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Providers of blobs: unreachable, stalled, corrupt bytes.
    Providers,
    /// Workers: late, failed, or output that did not pass verification (`Corrupt`).
    Workers,
}

#[derive(Debug)]
pub struct Reputation {
    book: Mutex<ProviderBook>,
    db: Arc<NodeDb>,
    kind: Kind,
}

impl Reputation {
    /// The providers' book as the database last saw it.
    pub fn load(db: Arc<NodeDb>) -> Result<Self, DbError> {
        Self::load_kind(db, Kind::Providers)
    }

    /// The book of `kind`, as the database last saw it.
    pub fn load_kind(db: Arc<NodeDb>, kind: Kind) -> Result<Self, DbError> {
        let mut book = ProviderBook::new(PROVIDER_BOOK_CAPACITY);
        let saved = match kind {
            Kind::Providers => db.providers()?,
            Kind::Workers => db.workers()?,
        };
        for (key, standing) in saved {
            book.restore(key, standing);
        }
        Ok(Self {
            book: Mutex::new(book),
            db,
            kind,
        })
    }

    /// Whether `key` is banned now.
    pub fn is_banned(&self, key: &ProviderKey) -> bool {
        self.rank([*key]).is_empty()
    }

    /// `candidates` best first, banned ones left out.
    pub fn rank(&self, candidates: impl IntoIterator<Item = ProviderKey>) -> Vec<ProviderKey> {
        match self.book.lock() {
            Ok(book) => book.rank(candidates, unix_now()),
            Err(_) => candidates.into_iter().collect(),
        }
    }

    pub fn penalise(&self, key: ProviderKey, failure: Failure, detail: &str) {
        tracing::info!(key = %hex::encode(&key[..5]), kind = ?self.kind, ?failure, "penalised: {detail}");
        self.update(key, |book, now| {
            book.record_failure(key, failure, now).clone()
        });
    }

    pub fn reward(&self, key: ProviderKey) {
        self.update(key, |book, now| book.record_success(key, now).clone());
    }

    fn update(&self, key: ProviderKey, change: impl FnOnce(&mut ProviderBook, u64) -> Standing) {
        let standing = match self.book.lock() {
            Ok(mut book) => change(&mut book, unix_now()),
            Err(_) => return,
        };
        // Standings change rarely (once per provider per fetch); persisting each change
        // keeps bans across restarts.
        let saved = match self.kind {
            Kind::Providers => self.db.put_provider(&key, &standing),
            Kind::Workers => self.db.put_worker(&key, &standing),
        };
        if let Err(e) = saved {
            tracing::warn!("cannot persist a standing: {e}");
        }
    }

    /// `key`'s standing, if the book has one.
    pub fn standing_of(&self, key: &ProviderKey) -> Option<ProviderStanding> {
        let book = self.book.lock().ok()?;
        book.get(key).map(|s| view(key, s, unix_now()))
    }

    /// `key`'s score: 0 for one the book does not know.
    pub fn score(&self, key: &ProviderKey) -> i32 {
        self.book
            .lock()
            .ok()
            .and_then(|book| book.get(key).map(|s| s.score))
            .unwrap_or(0)
    }

    /// Every standing, for the status page.
    pub fn standings(&self) -> Vec<ProviderStanding> {
        let now = unix_now();
        let Ok(book) = self.book.lock() else {
            return Vec::new();
        };
        book.iter().map(|(key, s)| view(key, s, now)).collect()
    }
}

fn view(key: &ProviderKey, s: &Standing, now: u64) -> ProviderStanding {
    ProviderStanding {
        peer_id: peer_label(key),
        score: s.score,
        successes: s.successes,
        failures: s.failures,
        corrupt: s.corrupt,
        banned: s.banned_until > now,
        banned_until: s.banned_until,
    }
}
