//! What the node does, knowing nothing of HTTP. Each service owns its state; the others
//! hold an `Arc` of it and call its methods.
//!
//! ```text
//!   publish ──▶ library ──▶ fetch ──▶ blobs ──▶ actors (data plane, db, swarm)
//!      │           │          └──▶ reputation
//!      ├──▶ uploads└──▶ presence (this node's signed record, for announcements)
//!      └──▶ access (sign-in, ownership, content keys)          hot (served segments)
//!   relays ──▶ data plane, presence (a relay learned from the bootstrap nodes)
//!   worker ──▶ swarm (this node's advert, when it volunteers)
//! ```

pub mod access;
pub mod blobs;
pub mod fetch;
pub mod hot;
pub mod library;
pub mod operator;
pub mod presence;
pub mod publish;
pub mod relays;
pub mod reputation;
pub mod uploads;
pub mod worker;
