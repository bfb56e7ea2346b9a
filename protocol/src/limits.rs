//! Size limits that every decoder checks before it decodes.
//!
//! Each number bounds what one peer can make another allocate or process.

/// Largest gossipsub message a node sends or accepts. Gossip carries hashes, not bytes.
pub const MAX_GOSSIP_MESSAGE_BYTES: usize = 64 * 1024;

/// Largest encoded [`crate::SignedNodeRecord`]. A record with the maximum address count and
/// relay URL fits in well under 1 KiB; 2 KiB leaves room for growth within one version.
pub const MAX_NODE_RECORD_BYTES: usize = 2 * 1024;

/// Most direct socket addresses in one node record: a host with many interfaces lists a
/// handful; more is either misconfiguration or an attempt to make fetchers dial widely.
pub const MAX_NODE_ADDRS: usize = 16;

/// Longest relay URL in a node record.
pub const MAX_RELAY_URL_BYTES: usize = 256;

/// Largest encoded [`crate::Announcement`].
pub const MAX_ANNOUNCEMENT_BYTES: usize = 4 * 1024;

/// Largest encoded [`crate::worker::SignedWorkerAdvert`]: the most codec and GPU names the
/// advert allows, each at its longest, fit in about 3 KiB.
pub const MAX_WORKER_ADVERT_BYTES: usize = 4 * 1024;

/// Largest encoded job offer or reply: a receipt of 8 rungs of 64 segments (about 45
/// bytes each) and two node records fit in about 26 KiB.
pub const MAX_JOB_MESSAGE_BYTES: usize = 64 * 1024;

/// How far in the future a record's issue time may lie, in seconds, to allow for clock skew.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// How long a signed node record stays valid after it was issued, in seconds. Nodes
/// republish well before this (see the node's record refresh interval).
pub const NODE_RECORD_TTL_SECS: u64 = 24 * 3600;
