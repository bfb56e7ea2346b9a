//! What owns a socket, a task or a file. Services reach these through their handles.

pub mod data_plane;
pub mod db;
pub mod relay_tls;

pub use streamgate_swarm as swarm;
