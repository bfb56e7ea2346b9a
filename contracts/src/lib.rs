//! Rust bindings for the StreamGate contracts. Not built yet: the contracts arrive with NFT-gated viewing.
