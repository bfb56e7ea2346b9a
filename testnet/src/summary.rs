//! What `up` prints once the network is ready, and the URLs `status` shows.

use crate::{nodes::node_api, state::State};

/// The URLs worth showing: every node's API, and HLS/DASH of both videos on every node.
pub fn urls(state: &State) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(chain) = &state.chain {
        out.push(("chain RPC".to_string(), chain.rpc_url.clone()));
    }
    for k in 1..=state.nodes {
        let api = node_api(&state.ports, k);
        out.push((format!("node-{k} API"), api.clone()));
        if let Some(v) = &state.videos {
            out.push((
                format!("node-{k} public HLS"),
                format!("{api}/hls/{}/master.m3u8", v.public),
            ));
            out.push((
                format!("node-{k} public DASH"),
                format!("{api}/dash/{}/manifest.mpd", v.public),
            ));
            out.push((
                format!("node-{k} gated HLS"),
                format!("{api}/hls/{}/master.m3u8", v.gated),
            ));
        }
    }
    out
}

/// What `up` prints once the network is ready.
pub fn print(state: &State) {
    println!();
    println!("StreamGate testnet is ready ({} nodes).", state.nodes);
    if let Some(chain) = &state.chain {
        println!(
            "  chain:      {} (chain id {})",
            chain.rpc_url, chain.chain_id
        );
        println!("  StreamPass: {}", chain.pass);
        println!("  StreamPass1155: {}", chain.pass1155);
        println!("  ContentRegistry: {}", chain.registry);
    }
    println!("  development accounts (anvil's well-known keys; never use them on a real chain):");
    for a in &state.accounts {
        println!(
            "    #{} {} {} {}",
            a.index,
            a.address,
            a.private_key,
            if a.has_pass {
                "holds a StreamPass"
            } else {
                "no pass"
            }
        );
    }
    for (name, url) in urls(state) {
        println!("  {name:<20} {url}");
    }
    if let Some(v) = &state.videos {
        println!();
        println!("Play the public video from node 2:");
        let k = state.nodes.min(2);
        println!(
            "  ffplay {}/hls/{}/master.m3u8",
            node_api(&state.ports, k),
            v.public
        );
        println!("Play the gated one with a pass holder's key:");
        if let Some(holder) = state.accounts.iter().find(|a| a.has_pass) {
            println!(
                "  TOKEN=$(KEY={} target/release/streamgate --node {} sign-in --private-key-env KEY)",
                holder.private_key,
                node_api(&state.ports, 1)
            );
        }
        println!(
            "  STREAMGATE_SESSION=$TOKEN target/release/streamgate --node {} play {}",
            node_api(&state.ports, 1),
            v.gated
        );
    }
    println!();
    println!(
        "Logs are in {}; Ctrl-C stops everything.",
        state
            .processes
            .first()
            .and_then(|p| p.log.parent())
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
}
