//! `streamgate sign-in`: Sign-In with Ethereum (EIP-4361) from the command line, so that
//! FFmpeg, VLC or curl can play gated content with `Authorization: Bearer <token>`.

use alloy::{
    primitives::Address,
    signers::{Signer, local::PrivateKeySigner},
};
use anyhow::{Context, anyhow, bail};
use streamgate_api::v1::{NonceResponse, SessionResponse, SignInRequest};
use streamgate_protocol::siwe::SiweMessage;

use crate::{parse, send};

#[derive(Debug)]
pub struct SignInArgs {
    /// Name of the environment variable holding the hex private key.
    pub private_key_env: String,
    pub chain_id: Option<u64>,
    /// Sign in as this contract wallet (ERC-1271), signing with its owner's key.
    pub account: Option<Address>,
    pub json: bool,
}

pub async fn sign_in(client: &reqwest::Client, base: &str, args: SignInArgs) -> anyhow::Result<()> {
    let secret = std::env::var(&args.private_key_env)
        .with_context(|| format!("environment variable {} is not set", args.private_key_env))?;
    let signer: PrivateKeySigner = secret
        .trim()
        .parse()
        .map_err(|_| anyhow!("{} does not hold a hex private key", args.private_key_env))?;
    let hello: NonceResponse =
        parse(send(client.get(format!("{base}/api/v1/auth/nonce")), base).await?).await?;
    let (nonce, domain, origin, chains) = (
        hello.nonce.as_str(),
        hello.domain.as_str(),
        hello.origin.as_str(),
        hello.chain_ids.clone(),
    );
    let chain_id = match args.chain_id {
        Some(id) => id,
        None => match chains.as_slice() {
            [only] => *only,
            [] => bail!("the node checks no chain; gated content cannot be unlocked there"),
            many => bail!("the node checks chains {many:?}: pick one with --chain-id"),
        },
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let message = SiweMessage {
        scheme: None,
        domain: domain.to_string(),
        address: args.account.unwrap_or(signer.address()),
        statement: Some("Sign in to StreamGate to watch gated videos.".into()),
        uri: origin.to_string(),
        version: "1".into(),
        chain_id,
        nonce: nonce.to_string(),
        issued_at: now,
        expiration_time: Some(now + 3600),
        not_before: None,
        request_id: None,
        resources: Vec::new(),
    }
    .to_text();
    let signature = signer
        .sign_message(message.as_bytes())
        .await
        .map_err(|e| anyhow!("cannot sign: {e}"))?;
    let body = SignInRequest {
        message,
        signature: format!("0x{}", hex::encode(signature.as_bytes())),
    };
    let session: SessionResponse = parse(
        send(
            client.post(format!("{base}/api/v1/auth/siwe")).json(&body),
            base,
        )
        .await?,
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string(&session)?);
    } else {
        println!("{}", session.token);
        eprintln!(
            "signed in as {} until {}; play with: ffplay -headers 'Authorization: Bearer {}' URL",
            session.address,
            streamgate_protocol::siwe::format_time(session.expires_at as i64),
            session.token
        );
    }
    Ok(())
}
