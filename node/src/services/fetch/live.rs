//! Verified bytes of a blob while it is being fetched, so readers can answer with the first
//! bytes as they arrive instead of after the whole blob is stored.
//!
//! The driver puts every verified leaf here as it forwards it to the store. A window of the
//! most recent leaves stays in memory (at most [`WINDOW_BYTES`] per blob, and a node-wide
//! budget shared by all fetches); readers behind the window read verified bytes from the
//! store. When the fetch ends, readers that still need bytes read them from the store.

use std::{
    collections::BTreeMap,
    ops::Range,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::Stream;
use streamgate_protocol::ContentHash;
use tokio::sync::watch;

use super::FetchError;
use crate::services::blobs::Blobs;

/// Leaves kept in memory per blob.
pub const WINDOW_BYTES: u64 = 32 << 20;
/// How long a reader waits for the next verified bytes before it gives up. Longer than
/// any stall the fetch itself tolerates, so the fetch decides first.
const READER_PATIENCE: Duration = Duration::from_secs(120);

/// Where a fetch stands, as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveState {
    /// No provider has delivered or proven anything yet.
    Waiting,
    /// A provider is delivering: the size is known (proven, or claimed by a signed
    /// manifest and matched by the first verified bytes).
    Flowing {
        size: u64,
    },
    /// The blob is stored.
    Stored {
        size: u64,
    },
    Failed(FetchError),
}

#[derive(Debug)]
struct Leaves {
    /// Verified leaves in memory by offset.
    map: BTreeMap<u64, Bytes>,
    held: u64,
    /// Every verified byte range, merged, in memory or not.
    verified: Vec<Range<u64>>,
    size: Option<u64>,
    delivering: bool,
    end: Option<Result<u64, FetchError>>,
}

/// The live view of one fetch. Shared by the driver and every reader.
#[derive(Debug)]
pub struct LiveBlob {
    hash: ContentHash,
    leaves: Mutex<Leaves>,
    /// Bumped on every change; readers wait on it.
    version: watch::Sender<u64>,
    /// Node-wide bytes held by all live blobs, and its cap.
    budget: Arc<AtomicU64>,
    budget_cap: u64,
}

impl LiveBlob {
    pub fn new(hash: ContentHash, budget: Arc<AtomicU64>, budget_cap: u64) -> Self {
        Self {
            hash,
            leaves: Mutex::new(Leaves {
                map: BTreeMap::new(),
                held: 0,
                verified: Vec::new(),
                size: None,
                delivering: false,
                end: None,
            }),
            version: watch::Sender::new(0),
            budget,
            budget_cap,
        }
    }

    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    pub fn state(&self) -> LiveState {
        let Ok(leaves) = self.leaves.lock() else {
            return LiveState::Failed(FetchError::Store("live state poisoned".into()));
        };
        match (&leaves.end, leaves.size) {
            (Some(Ok(size)), _) => LiveState::Stored { size: *size },
            (Some(Err(e)), _) => LiveState::Failed(e.clone()),
            (None, Some(size)) if leaves.delivering => LiveState::Flowing { size },
            _ => LiveState::Waiting,
        }
    }

    /// Waits until the state is no longer [`LiveState::Waiting`].
    pub async fn ready(&self) -> LiveState {
        let mut version = self.version.subscribe();
        loop {
            let state = self.state();
            if state != LiveState::Waiting {
                return state;
            }
            if version.changed().await.is_err() {
                return self.state();
            }
        }
    }

    /// Waits for the end of the fetch.
    pub async fn finished(&self) -> Result<u64, FetchError> {
        let mut version = self.version.subscribe();
        loop {
            match self.state() {
                LiveState::Stored { size } => return Ok(size),
                LiveState::Failed(e) => return Err(e),
                _ => {}
            }
            if version.changed().await.is_err() {
                return Err(FetchError::Store("the fetch vanished".into()));
            }
        }
    }

    /// The size is known; `proven` when a provider proved it (else it is a signed
    /// manifest's claim, trusted once bytes verify against it).
    pub(super) fn set_size(&self, size: u64, proven: bool) {
        if let Ok(mut leaves) = self.leaves.lock() {
            leaves.size = Some(size);
            leaves.delivering |= proven;
        }
        self.changed();
    }

    /// A verified leaf arrived.
    pub(super) fn add(&self, offset: u64, data: Bytes) {
        let len = data.len() as u64;
        if let Ok(mut leaves) = self.leaves.lock() {
            leaves.delivering = true;
            merge(&mut leaves.verified, offset..offset + len);
            let fits = self.budget.load(Ordering::Relaxed) + len <= self.budget_cap;
            if fits && !leaves.map.contains_key(&offset) {
                leaves.map.insert(offset, data);
                leaves.held += len;
                self.budget.fetch_add(len, Ordering::Relaxed);
                // Forget the lowest offsets first: readers mostly read forwards, and those
                // behind the window find the bytes in the store.
                while leaves.held > WINDOW_BYTES {
                    let Some((_, gone)) = leaves.map.pop_first() else {
                        break;
                    };
                    leaves.held -= gone.len() as u64;
                    self.budget.fetch_sub(gone.len() as u64, Ordering::Relaxed);
                }
            }
        }
        self.changed();
    }

    pub(super) fn end(&self, result: Result<u64, FetchError>) {
        if let Ok(mut leaves) = self.leaves.lock() {
            leaves.end = Some(result);
        }
        self.changed();
    }

    /// Whether the byte at `pos` is verified (and so in the store or about to be).
    fn is_verified(&self, pos: u64) -> bool {
        self.leaves
            .lock()
            .is_ok_and(|l| l.verified.iter().any(|r| r.contains(&pos)))
    }

    /// The verified bytes in memory that start at `pos`, at most up to `end`.
    fn in_memory(&self, pos: u64, end: u64) -> Option<Bytes> {
        let leaves = self.leaves.lock().ok()?;
        let (offset, data) = leaves.map.range(..=pos).next_back()?;
        let skip = pos - offset;
        if skip >= data.len() as u64 {
            return None;
        }
        let take = (data.len() as u64 - skip).min(end - pos);
        Some(data.slice(skip as usize..(skip + take) as usize))
    }

    /// The bytes `range` of the blob, verified, as they become available: from memory
    /// while the fetch runs, from the store for what it already holds. Ends with an error
    /// if the fetch fails before every byte arrived.
    pub fn read(
        self: Arc<Self>,
        blobs: Arc<Blobs>,
        range: Range<u64>,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        futures::stream::unfold(
            (self, blobs, range.start, range.end),
            |(live, blobs, pos, end)| async move {
                if pos >= end {
                    return None;
                }
                let next = live.next_piece(&blobs, pos, end).await;
                match next {
                    Ok(bytes) => {
                        let at = pos + bytes.len() as u64;
                        Some((Ok(bytes), (live, blobs, at, end)))
                    }
                    // Ending the stream with an error makes the server cut the response
                    // short, which clients see as a failed transfer.
                    Err(e) => Some((Err(e), (live, blobs, end, end))),
                }
            },
        )
    }

    async fn next_piece(&self, blobs: &Blobs, pos: u64, end: u64) -> std::io::Result<Bytes> {
        let mut version = self.version.subscribe();
        let deadline = tokio::time::Instant::now() + READER_PATIENCE;
        loop {
            version.borrow_and_update();
            if let Some(bytes) = self.in_memory(pos, end) {
                return Ok(bytes);
            }
            match self.state() {
                LiveState::Failed(e) => return Err(std::io::Error::other(e.to_string())),
                LiveState::Stored { .. } => {
                    return blobs.read_piece(&self.hash, pos, end, true).await;
                }
                _ => {
                    // Verified but not in memory (behind the window, or over the budget):
                    // the store has them, or will once the import catches up.
                    if self.is_verified(pos)
                        && let Ok(bytes) = blobs.read_piece(&self.hash, pos, end, false).await
                    {
                        return Ok(bytes);
                    }
                }
            }
            match tokio::time::timeout_at(deadline, version.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return Err(std::io::Error::other(format!(
                        "no verified bytes of {} at offset {pos}",
                        self.hash.short()
                    )));
                }
            }
        }
    }
}

impl Drop for LiveBlob {
    fn drop(&mut self) {
        if let Ok(leaves) = self.leaves.lock() {
            self.budget.fetch_sub(leaves.held, Ordering::Relaxed);
        }
    }
}

/// Adds `range` to sorted, disjoint `ranges`, merging what touches.
fn merge(ranges: &mut Vec<Range<u64>>, range: Range<u64>) {
    let at = ranges.partition_point(|r| r.end < range.start);
    let mut merged = range;
    while at < ranges.len() && ranges[at].start <= merged.end {
        let r = ranges.remove(at);
        merged = merged.start.min(r.start)..merged.end.max(r.end);
    }
    ranges.insert(at, merged);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_ranges_merge() {
        let mut ranges = Vec::new();
        merge(&mut ranges, 10..20);
        merge(&mut ranges, 30..40);
        merge(&mut ranges, 0..5);
        assert_eq!(ranges, vec![0..5, 10..20, 30..40]);
        merge(&mut ranges, 20..30);
        assert_eq!(ranges, vec![0..5, 10..40]);
        merge(&mut ranges, 3..12);
        assert_eq!(ranges, vec![0..40]);
    }

    #[test]
    fn the_window_and_the_budget_bound_memory() {
        let budget = Arc::new(AtomicU64::new(0));
        let live = LiveBlob::new(ContentHash::of(b"x"), budget.clone(), 3 * WINDOW_BYTES);
        let leaf = Bytes::from(vec![7u8; 16 * 1024]);
        let leaves = 2 * WINDOW_BYTES / leaf.len() as u64;
        for i in 0..leaves {
            live.add(i * leaf.len() as u64, leaf.clone());
        }
        assert!(budget.load(Ordering::Relaxed) <= WINDOW_BYTES);
        assert!(
            live.in_memory(0, 10).is_none(),
            "oldest leaves left the window"
        );
        let last = (leaves - 1) * leaf.len() as u64;
        assert_eq!(live.in_memory(last + 5, last + 9).map(|b| b.len()), Some(4));
        assert!(live.is_verified(0), "still known as verified");
        drop(live);
        assert_eq!(budget.load(Ordering::Relaxed), 0, "released on drop");

        let tight = LiveBlob::new(ContentHash::of(b"y"), budget.clone(), 1);
        tight.add(0, leaf.clone());
        assert!(tight.in_memory(0, 1).is_none(), "over the budget: not held");
        assert!(tight.is_verified(0));
    }
}
