//! The StreamGate node's outward contracts, as types every crate that speaks them shares.
//!
//! | module | contract | written by | read by |
//! |---|---|---|---|
//! | [`config`] | `DATA_DIR/config.toml` | `streamgate-node init`, the testnet, the tests | the node |
//! | [`ready`] | `DATA_DIR/run/node.json`, `DATA_DIR/run/bootstrap.json` | the daemons when ready | the testnet, the tests, scripts |
//! | [`v1`] | the JSON bodies of the HTTP API under `/api/v1` | the node | the CLI, the testnet, the tests |
//! | [`cli`] | what `streamgate --json` prints where it is more than an API body | the CLI | the testnet, the tests, scripts |
//!
//! The CLI and the testnet link this crate, never the node: a renamed field breaks the
//! build of every side at once instead of a minutes-long end-to-end test.

pub mod cli;
pub mod config;
pub mod ready;
pub mod v1;
