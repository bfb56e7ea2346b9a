//! The StreamGate node.
//!
//! A node joins a libp2p swarm (the control plane: who has what, and where their data
//! plane listens) and serves and fetches BLAKE3-verified blobs over iroh-blobs (the data
//! plane). One Ed25519 key is both its libp2p PeerId and its iroh NodeId.
//!
//! ```text
//!                 ┌──────────────── streamgate-node ─────────────────┐
//!   HTTP client ─▶│ api (axum) ─▶ Node ─┬─▶ swarm actor (libp2p) ◀───┼──▶ other nodes:
//!                 │                     │     kad, gossipsub, ...    │    provider records,
//!                 │                     ├─▶ fetch (range scheduler)  │    node records
//!                 │                     ├─▶ data plane (iroh) ◀──────┼──▶ blob bytes
//!                 │                     └─▶ NodeDb (redb)            │
//!                 └──────────────────────────────────────────────────┘
//! ```
//!
//! The bootstrap daemon reuses [`swarm`], [`identity`] and [`runfile`].

pub mod access;
pub mod api;
pub mod bounded;
pub mod config;
pub mod data_plane;
pub mod db;
pub mod fetch;
pub mod gateway;
pub mod hot;
pub mod identity;
pub mod node;
pub mod publish;
pub mod runfile;
pub mod swarm;
pub mod uploads;
pub mod videos;
pub mod zerocopy;
