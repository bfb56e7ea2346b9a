//! The StreamGate node, in three layers; each layer uses only the ones below it.
//!
//! ```text
//!   http/       axum routes, one file per surface: blobs, gateway (HLS/DASH), uploads (tus),
//!               jobs (publish, manifests, pin), auth (sign-in), keys, status. Turns requests
//!               into service calls and service errors into JSON errors. Nothing else.
//!      │
//!      ▼
//!   services/   what the node does, knowing nothing of HTTP:
//!               blobs (the local store of verified blobs), fetch (getting blobs from the
//!               swarm: a sans-IO plan driven over iroh), library (manifests and videos),
//!               publish (jobs: transcode, store, sign, announce), uploads (resumable files),
//!               access (sign-in, ownership checks, keys), reputation (provider standings),
//!               presence (this node's signed record), hot (segments kept for serving)
//!      │
//!      ▼
//!   actors/     what owns a socket, a task or a file: the data plane (iroh endpoint and
//!               blob store), the node database (redb); the libp2p swarm actor lives in the
//!               `streamgate-swarm` crate, shared with the bootstrap daemon
//! ```
//!
//! Each piece of mutable state has one owner, a service or an actor, whose fields are
//! private: others call its methods. [`node::Node`] only assembles them. `config` (the
//! checked configuration) and `zerocopy` (sockets that send file-backed bytes with
//! `sendfile`) are used by every layer and use none.
//!
//! New work goes where its kind already is: an endpoint in `http/`, a capability of the
//! node (workers, payments, WebRTC sessions) as a service in `services/`, a protocol that
//! owns connections as an actor in `actors/`.

pub mod actors;
pub mod config;
pub mod http;
pub mod memory;
pub mod node;
pub mod services;
pub mod zerocopy;
