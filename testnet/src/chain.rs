//! The chain: anvil with its state kept in the data folder, the contracts deployed once
//! (and reused on later runs), passes minted for two development accounts.

use std::{path::Path, time::Duration};

use alloy::{
    network::EthereumWallet,
    primitives::Address,
    providers::{Provider, ProviderBuilder},
    signers::local::{MnemonicBuilder, PrivateKeySigner, coins_bip39::English},
};
use anyhow::bail;
use streamgate_contracts::{ContentRegistry, StreamPass, StreamPass1155};
use tokio::process::Command;

use crate::{
    state::{ChainState, DevAccount, State},
    supervisor::Children,
};

/// anvil's well-known development mnemonic: its accounts are funded on every anvil chain.
const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";
pub const CHAIN_ID: u64 = 31337;
/// Development accounts 1 and 2 get a StreamPass; 3 and 4 do not; 0 deploys and publishes.
const PASS_HOLDERS: [usize; 2] = [1, 2];
const SHOWN_ACCOUNTS: usize = 5;

pub fn dev_signer(index: usize) -> anyhow::Result<PrivateKeySigner> {
    Ok(MnemonicBuilder::<English>::default()
        .phrase(DEV_MNEMONIC)
        .index(index as u32)?
        .build()?)
}

/// The account that deploys the contracts and registers the gated demo video.
pub fn deployer_address() -> anyhow::Result<String> {
    Ok(dev_signer(0)?.address().to_string())
}

pub fn rpc_url(state: &State) -> String {
    format!("http://127.0.0.1:{}", state.ports.anvil)
}

/// Starts anvil and waits until it answers; returns its pid.
pub async fn start_anvil(
    data: &Path,
    state: &State,
    children: &mut Children,
    anvil: &Path,
) -> anyhow::Result<u32> {
    std::fs::create_dir_all(data.join("chain"))?;
    println!("starting anvil on port {}", state.ports.anvil);
    let pid = children.spawn(
        "anvil",
        Command::new(anvil)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &state.ports.anvil.to_string(),
            ])
            .args(["--chain-id", &CHAIN_ID.to_string(), "--state-interval", "2"])
            .arg("--state")
            .arg(data.join("chain/state.json")),
    )?;
    let provider = ProviderBuilder::new().connect_http(rpc_url(state).parse()?);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while provider.get_chain_id().await.is_err() {
        if tokio::time::Instant::now() > deadline || !children.reap().is_empty() {
            bail!(
                "anvil did not answer; see {}",
                children.log("anvil").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(pid)
}

/// Deploys the contracts and mints the passes, unless the chain's saved state has them.
pub async fn deploy_once(data: &Path, state: &mut State) -> anyhow::Result<()> {
    let rpc = rpc_url(state);
    let deployer = dev_signer(0)?;
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(deployer.clone()))
        .connect_http(rpc.parse()?);
    let reuse = match &state.chain {
        Some(chain) => {
            let pass: Address = chain.pass.parse()?;
            !provider.get_code_at(pass).await?.is_empty()
        }
        None => false,
    };
    if reuse {
        println!("reusing the contracts deployed earlier");
    } else {
        println!("deploying contracts");
        let pass = StreamPass::deploy(&provider, deployer.address()).await?;
        let pass1155 = StreamPass1155::deploy(&provider, deployer.address()).await?;
        let registry = ContentRegistry::deploy(&provider).await?;
        for holder in PASS_HOLDERS {
            pass.mint(dev_signer(holder)?.address())
                .send()
                .await?
                .get_receipt()
                .await?;
        }
        state.chain = Some(ChainState {
            rpc_url: rpc,
            chain_id: CHAIN_ID,
            pass: pass.address().to_string(),
            pass1155: pass1155.address().to_string(),
            registry: registry.address().to_string(),
        });
        // A chain without its contracts means the videos gated on them are gone too.
        state.videos = None;
    }
    state.accounts = (0..SHOWN_ACCOUNTS)
        .map(|i| {
            let signer = dev_signer(i)?;
            Ok(DevAccount {
                index: i,
                address: signer.address().to_string(),
                private_key: format!("0x{}", hex::encode(signer.to_bytes())),
                has_pass: PASS_HOLDERS.contains(&i),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    state.save(data)
}
