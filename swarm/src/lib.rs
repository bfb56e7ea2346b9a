//! What every StreamGate daemon shares: the node identity ([`identity`]), daemon plumbing
//! ([`daemon`]: ready file, signals, logging), and the libp2p swarm, which one task owns;
//! the rest of a daemon talks to it through a bounded command channel and a cloneable
//! [`SwarmHandle`].
//!
//! ```text
//!   node services ──SwarmHandle──(mpsc, 256)──▶ actor task ──owns──▶ Swarm<Behaviour>
//!                 ◀──oneshot replies───────────┘      │ kad queries, gossip, identify
//! ```
//!
//! What the swarm is for: finding who provides a blob (Kademlia provider records, cached,
//! and fed by gossip announcements), and finding where a provider's data plane listens
//! (signed node records in the DHT). Blob bytes never cross it.
//!
//! This crate links neither the media stack, the chains nor the HTTP gateway: the bootstrap
//! daemon is built from it alone. Without its default `daemon` feature it is only
//! [`identity`] and [`records`] (what a peer's DHT records must be), and links no network
//! stack: the fuzz targets build it that way.

#[cfg(feature = "daemon")]
mod actor;
#[cfg(feature = "daemon")]
pub mod behaviour;
#[cfg(feature = "daemon")]
pub mod daemon;
#[cfg(feature = "daemon")]
mod handle;
pub mod identity;
#[cfg(feature = "daemon")]
pub mod jobs;
#[cfg(feature = "daemon")]
mod nat;
pub mod records;

#[cfg(feature = "daemon")]
pub use handle::*;
