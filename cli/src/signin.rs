//! `streamgate sign-in`: Sign-In with Ethereum (EIP-4361) from the command line, so that
//! FFmpeg, VLC or curl can play gated content with `Authorization: Bearer <token>`.

use alloy::{
    primitives::Address,
    signers::{Signer, local::PrivateKeySigner},
};
use anyhow::{Context, anyhow, bail};
use streamgate_api::v1::{NonceResponse, SessionResponse, SignInRequest};
use streamgate_protocol::siwe::SiweMessage;

use crate::{parse, same_origin, send};

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
    // The message names the node this CLI was told to use, never what the node claims:
    // a node claiming another's domain is asking for a signature valid over there.
    let (origin, domain) = origin_of(base)?;
    if !same_origin(&hello.origin, &origin) || !hello.domain.eq_ignore_ascii_case(&domain) {
        bail!(
            "the node at {base} says it is {} ({}): refusing to sign in for another domain (if the node is behind a proxy, use its public URL with --node)",
            hello.origin,
            hello.domain
        );
    }
    let (nonce, chains) = (hello.nonce.as_str(), hello.chain_ids.clone());
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
        domain,
        address: args.account.unwrap_or(signer.address()),
        statement: Some("Sign in to StreamGate to watch gated videos.".into()),
        uri: origin,
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
            "signed in as {} until {}; play with: STREAMGATE_SESSION=<this token> streamgate play MANIFEST_ID (keeps the token off the player's command line)",
            session.address,
            streamgate_protocol::siwe::format_time(session.expires_at as i64),
        );
    }
    Ok(())
}

/// The origin (`scheme://host[:port]`) and EIP-4361 domain (`host[:port]`) of `base`.
fn origin_of(base: &str) -> anyhow::Result<(String, String)> {
    let url = reqwest::Url::parse(base).with_context(|| format!("--node {base:?} is not a URL"))?;
    let host = url
        .host_str()
        .ok_or_else(|| anyhow!("--node {base:?} names no host"))?;
    let domain = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    Ok((format!("{}://{domain}", url.scheme()), domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_comes_from_the_url_given() {
        let (origin, domain) = origin_of("http://127.0.0.1:7700/").expect("url");
        assert_eq!(
            (origin.as_str(), domain.as_str()),
            ("http://127.0.0.1:7700", "127.0.0.1:7700")
        );
        let (origin, domain) = origin_of("https://Node.Example.org").expect("url");
        assert_eq!(
            (origin.as_str(), domain.as_str()),
            ("https://node.example.org", "node.example.org")
        );
        assert!(same_origin(
            "https://node.example.org:443",
            "https://node.example.org"
        ));
        assert!(!same_origin(
            "https://evil.example",
            "https://node.example.org"
        ));
        assert!(!same_origin(
            "http://node.example.org",
            "https://node.example.org"
        ));
    }
}
