//! `make bench-access`: how fast a node verifies sign-ins, and how long ownership checks
//! take against a real anvil chain, cached and uncached (median and p99).
//!
//! Runs the node's own access code in-process (`streamgate_node::services::access::Access`), so the
//! figures are the verification and the chain round trip, not HTTP.

use std::time::Instant;

use alloy::{
    primitives::Address,
    signers::{Signer, local::PrivateKeySigner},
};
use streamgate_node::{
    config::{ChainConfig, Config},
    services::access::Access,
};
use streamgate_protocol::{
    access::{AccessPolicy, TokenStandard},
    siwe::SiweMessage,
};
use streamgate_swarm::identity::Identity;
use streamgate_tests::chain::TestChain;

const SIGN_INS: usize = 2000;
const CHECKS: usize = 500;

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let chain = TestChain::start(31337).await?;
        let mut config = Config::default();
        config.chains.push(ChainConfig {
            chain_id: 31337,
            rpc_urls: vec![chain.rpc_url()],
            registry: None,
        });
        let key_dir = tempfile::tempdir()?;
        let identity = Identity::create(key_dir.path())?;
        let access = Access::new(&config, "http://127.0.0.1:7700", identity)
            .map_err(anyhow::Error::msg)?;
        let (holder, key) = chain.account(1);
        chain.mint_pass(holder).await?;
        let signer: PrivateKeySigner = key.parse()?;

        // Sign-in verification: messages are made and signed beforehand; only the node's
        // work (parse, checks, nonce, ecrecover, session) is timed.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
        let mut signed = Vec::with_capacity(SIGN_INS);
        for _ in 0..SIGN_INS {
            let text = SiweMessage {
                scheme: None,
                domain: access.domain.clone(),
                address: signer.address(),
                statement: None,
                uri: access.origin.clone(),
                version: "1".into(),
                chain_id: 31337,
                nonce: access.new_nonce()?,
                issued_at: now,
                expiration_time: Some(now + 600),
                not_before: None,
                request_id: None,
                resources: vec![],
            }
            .to_text();
            let signature = signer.sign_message(text.as_bytes()).await?;
            signed.push((text, format!("0x{}", hex::encode(signature.as_bytes()))));
        }
        let started = Instant::now();
        for (text, signature) in &signed {
            access.sign_in(text, signature).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let per_sec = SIGN_INS as f64 / started.elapsed().as_secs_f64();

        let policy = AccessPolicy {
            chain_id: 31337,
            standard: TokenStandard::Erc721,
            contract: chain.pass,
            token_id: None,
            min_balance: 1,
            registrant: None,
        };
        // Let the event follower report healthy, so cached results are trusted.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let mut uncached = Vec::with_capacity(CHECKS);
        for i in 0..CHECKS {
            // A viewer never seen before: a cache miss and a balanceOf call to anvil.
            let viewer = Address::from_word(alloy::primitives::B256::from(alloy::primitives::U256::from(i + 1)));
            let t = Instant::now();
            let _ = access.check([1; 32], &policy, viewer).await;
            uncached.push(t.elapsed().as_secs_f64() * 1e3);
        }
        access.check([1; 32], &policy, holder).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut cached = Vec::with_capacity(CHECKS);
        for _ in 0..CHECKS {
            let t = Instant::now();
            access.check([1; 32], &policy, holder).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            cached.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let pct = |v: &mut Vec<f64>, p: f64| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[((v.len() as f64 - 1.0) * p).round() as usize]
        };
        println!("bench-access (anvil on loopback, in-process node access code)");
        println!("  sign-in verification (EIP-4361 + EIP-191): {per_sec:.0} per second ({SIGN_INS} sign-ins, one thread)");
        println!(
            "  ownership check, uncached (balanceOf over JSON-RPC): median {:.3} ms, p99 {:.3} ms ({CHECKS} checks)",
            pct(&mut uncached, 0.5),
            pct(&mut uncached, 0.99)
        );
        println!(
            "  ownership check, cached:                            median {:.4} ms, p99 {:.4} ms ({CHECKS} checks)",
            pct(&mut cached, 0.5),
            pct(&mut cached, 0.99)
        );
        Ok(())
    })
}
