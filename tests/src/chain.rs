//! Real anvil chains for access-control tests: start one, deploy the StreamGate contracts
//! from the committed artifacts, mint and move passes.

use std::path::PathBuf;

use alloy::{
    node_bindings::{Anvil, AnvilInstance},
    primitives::{Address, FixedBytes, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use anyhow::Context;
use streamgate_contracts::{ContentRegistry, OwnedWallet, StreamPass, StreamPass1155};

/// The anvil binary installed by `scripts/setup.sh`.
pub fn anvil_path() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let path = root.join(".tools/bin/anvil");
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh",
        path.display()
    );
    path
}

/// A running chain with the contracts deployed by its first development account.
#[derive(Debug)]
pub struct TestChain {
    pub anvil: AnvilInstance,
    pub pass: Address,
    pub pass1155: Address,
    pub registry: Address,
}

impl TestChain {
    pub async fn start(chain_id: u64) -> anyhow::Result<Self> {
        let anvil = Anvil::at(anvil_path())
            .chain_id(chain_id)
            .try_spawn()
            .context("start anvil")?;
        let deployer = Self::signer_of(&anvil, 0);
        let provider = Self::provider_for(&anvil, &deployer);
        let pass = *StreamPass::deploy(&provider, deployer.address())
            .await?
            .address();
        let pass1155 = *StreamPass1155::deploy(&provider, deployer.address())
            .await?
            .address();
        let registry = *ContentRegistry::deploy(&provider).await?.address();
        Ok(Self {
            anvil,
            pass,
            pass1155,
            registry,
        })
    }

    fn signer_of(anvil: &AnvilInstance, index: usize) -> PrivateKeySigner {
        PrivateKeySigner::from(anvil.keys()[index].clone())
    }

    fn provider_for(anvil: &AnvilInstance, signer: &PrivateKeySigner) -> DynProvider {
        ProviderBuilder::new()
            .wallet(signer.clone())
            .connect_http(anvil.endpoint_url())
            .erased()
    }

    pub fn rpc_url(&self) -> String {
        self.anvil.endpoint()
    }

    pub fn chain_id(&self) -> u64 {
        self.anvil.chain_id()
    }

    /// Development account `index`: its address and hex private key.
    pub fn account(&self, index: usize) -> (Address, String) {
        let signer = Self::signer_of(&self.anvil, index);
        (
            signer.address(),
            format!("0x{}", hex::encode(signer.to_bytes())),
        )
    }

    fn provider(&self, index: usize) -> DynProvider {
        Self::provider_for(&self.anvil, &Self::signer_of(&self.anvil, index))
    }

    /// Deploys another ERC-721 pass contract (nobody holds any of it yet).
    pub async fn deploy_pass(&self) -> anyhow::Result<Address> {
        let owner = Self::signer_of(&self.anvil, 0).address();
        Ok(*StreamPass::deploy(self.provider(0), owner).await?.address())
    }

    /// Mints an ERC-721 pass to `to`; returns its token id.
    pub async fn mint_pass(&self, to: Address) -> anyhow::Result<U256> {
        let pass = StreamPass::new(self.pass, self.provider(0));
        let id = pass.nextTokenId().call().await?;
        pass.mint(to).send().await?.get_receipt().await?;
        Ok(id)
    }

    /// Transfers ERC-721 pass `id` from development account `from` to `to`.
    pub async fn transfer_pass(&self, from: usize, to: Address, id: U256) -> anyhow::Result<()> {
        let owner = Self::signer_of(&self.anvil, from).address();
        StreamPass::new(self.pass, self.provider(from))
            .transferFrom(owner, to, id)
            .send()
            .await?
            .get_receipt()
            .await?;
        Ok(())
    }

    pub async fn mint_1155(&self, to: Address, id: u64, amount: u64) -> anyhow::Result<()> {
        StreamPass1155::new(self.pass1155, self.provider(0))
            .mint(to, U256::from(id), U256::from(amount))
            .send()
            .await?
            .get_receipt()
            .await?;
        Ok(())
    }

    /// Deploys a contract wallet owned by development account `owner`.
    pub async fn deploy_wallet(&self, owner: usize) -> anyhow::Result<Address> {
        let owner_address = Self::signer_of(&self.anvil, owner).address();
        Ok(*OwnedWallet::deploy(self.provider(0), owner_address)
            .await?
            .address())
    }

    /// Registers `manifest_id` in the registry (as development account `creator`) gated on
    /// ERC-721 `token` with at least one token.
    pub async fn register_gate(
        &self,
        creator: usize,
        manifest_id: [u8; 32],
        token: Address,
    ) -> anyhow::Result<()> {
        let policy = ContentRegistry::Policy {
            standard: 1,
            token,
            tokenId: U256::ZERO,
            specificToken: false,
            minBalance: U256::from(1),
        };
        self.register(creator, manifest_id, policy).await
    }

    /// Registers `manifest_id` (as development account `creator`) as public: anyone may watch.
    pub async fn register_public(
        &self,
        creator: usize,
        manifest_id: [u8; 32],
    ) -> anyhow::Result<()> {
        let policy = ContentRegistry::Policy {
            standard: 0,
            token: Address::ZERO,
            tokenId: U256::ZERO,
            specificToken: false,
            minBalance: U256::ZERO,
        };
        self.register(creator, manifest_id, policy).await
    }

    async fn register(
        &self,
        creator: usize,
        manifest_id: [u8; 32],
        policy: ContentRegistry::Policy,
    ) -> anyhow::Result<()> {
        ContentRegistry::new(self.registry, self.provider(creator))
            .register(FixedBytes(manifest_id), policy, String::new())
            .send()
            .await?
            .get_receipt()
            .await?;
        Ok(())
    }

    /// Mines `blocks` empty blocks at once.
    pub async fn mine(&self, blocks: u64) -> anyhow::Result<()> {
        let _: serde_json::Value = self
            .provider(0)
            .raw_request("anvil_mine".into(), (U256::from(blocks),))
            .await?;
        Ok(())
    }

    pub async fn block_number(&self) -> anyhow::Result<u64> {
        Ok(self.provider(0).get_block_number().await?)
    }
}
