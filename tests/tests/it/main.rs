//! End-to-end scenarios: real `streamgate-node`, `streamgate-bootstrap` and `streamgate`
//! processes on loopback. Run with `make test` (which builds the binaries first).

mod access;
mod bad_input;
mod chunks;
mod data_plane;
mod faults;
mod load;
mod media;
mod nat;
mod operator;
mod publish;
mod restart;
mod swarm;
mod testnet;
mod workers;
