//! The StreamGate protocol, without I/O.
//!
//! Everything two nodes must agree on lives here as plain types and pure functions:
//! content ids ([`ContentHash`]), signed video manifests ([`SignedManifest`]), the signed record a node publishes about its data-plane
//! addresses ([`NodeRecord`]), the gossip announcement of new content ([`Announcement`]), the advert of a
//! volunteered transcoding worker ([`worker`]), the job offers and receipts between publishers and workers ([`job`]),
//! HTTP byte ranges ([`range`]), the values of tus upload headers ([`tus`]), the size limits
//! every decoder enforces ([`limits`]), the provider reputation book a fetcher keeps
//! ([`reputation`]), the fetcher's plan of which bytes to ask which provider for
//! ([`fetch`]), and a bounded map for caches filled from the network ([`bounded`]).
//!
//! Nothing here opens a socket, spawns a task or reads the clock: callers pass the time in.
//! That keeps every rule testable in virtual time and lets the node crate own all I/O.

pub mod access;
pub mod announce;
pub mod bounded;
pub mod content;
pub mod fetch;
pub mod job;
pub mod limits;
pub mod manifest;
pub mod node_record;
pub mod range;
pub mod reputation;
pub mod siwe;
pub mod tus;
mod wire;
pub mod worker;

pub use announce::Announcement;
pub use content::{ContentHash, ParseHashError};
pub use manifest::{Manifest, ManifestError, SignedManifest};
pub use node_record::{NodeRecord, RecordError, SignedNodeRecord};
pub use wire::DecodeError;
