//! `DATA_DIR/testnet.json`: what the running network is made of, shared by `up` (which
//! writes it) and the other commands (which read it).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Bumped when the data folder layout changes incompatibly.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    /// The `up` process that owns the network, while it runs.
    pub supervisor_pid: Option<u32>,
    pub ready: bool,
    pub nodes: usize,
    /// The last this many of the nodes volunteer as workers.
    #[serde(default)]
    pub workers: usize,
    pub ports: Ports,
    pub chain: Option<ChainState>,
    pub bootstrap_addr: Option<String>,
    pub processes: Vec<ProcessState>,
    pub videos: Option<Videos>,
    pub accounts: Vec<DevAccount>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ports {
    pub anvil: u16,
    pub bootstrap: u16,
    pub relay: u16,
    pub first_api: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainState {
    pub rpc_url: String,
    pub chain_id: u64,
    pub pass: String,
    pub pass1155: String,
    pub registry: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessState {
    pub name: String,
    pub pid: Option<u32>,
    pub log: PathBuf,
    pub api_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Videos {
    pub public: String,
    pub gated: String,
    pub published_on: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevAccount {
    pub index: usize,
    pub address: String,
    pub private_key: String,
    pub has_pass: bool,
}

pub fn path(data: &Path) -> PathBuf {
    data.join("testnet.json")
}

impl State {
    /// The saved state, or a fresh one when the folder holds none.
    pub fn load(data: &Path) -> anyhow::Result<Self> {
        let file = path(data);
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    format: FORMAT,
                    ..Self::default()
                });
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        };
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", file.display()))?;
        let format = value["format"].as_u64().unwrap_or(0);
        if format != u64::from(FORMAT) {
            bail!(
                "{} is a data folder from an incompatible version (format {format}, this is {FORMAT}); \
                 remove it or use another --data",
                data.display()
            );
        }
        serde_json::from_value(value).with_context(|| format!("{} is damaged", file.display()))
    }

    /// Saves atomically (write, then rename).
    pub fn save(&self, data: &Path) -> anyhow::Result<()> {
        let file = path(data);
        let temp = data.join(".testnet.json.tmp");
        std::fs::write(&temp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&temp, &file)?;
        Ok(())
    }

    pub fn process(&self, name: &str) -> Option<&ProcessState> {
        self.processes.iter().find(|p| p.name == name)
    }

    pub fn set_process(&mut self, process: ProcessState) {
        match self.processes.iter_mut().find(|p| p.name == process.name) {
            Some(existing) => *existing = process,
            None => self.processes.push(process),
        }
    }
}

/// Whether a process with this pid exists (and is not a zombie we would reap).
pub fn alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    #[allow(unsafe_code)]
    let exists = unsafe { libc::kill(pid as i32, 0) } == 0;
    if !exists {
        return false;
    }
    // A zombie still "exists" for kill(0); /proc says whether it is one.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .map(|rest| !rest.trim_start().starts_with('Z'))
                .unwrap_or(true)
        })
        .unwrap_or(false)
}

pub fn signal(pid: u32, signal: i32) {
    // SAFETY: plain kill(2).
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid as i32, signal);
    }
}
