//! NFT-gated viewing against real anvil chains: sign-in, ownership checks, key release,
//! encrypted segments, transfers, contract wallets, two chains, and a dead RPC.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use alloy::{
    primitives::Address,
    signers::{Signer, local::PrivateKeySigner},
};
use serde_json::Value;
use streamgate_protocol::siwe::SiweMessage;
use streamgate_tests::{
    ChainConfig, Node, bin,
    chain::TestChain,
    http_client, init_node_dir,
    media::{decode_errors, make_clip, video_frames},
    operator_token, publish, start_bootstrap, start_node, status, test_config, wait_until,
};

/// A node that checks ownership on `chains` (chain id, RPC URL, registry).
fn gated_node(dir: &Path, chains: &[(u64, String, Option<Address>)]) -> Node {
    gated_node_joining(dir, chains, &[])
}

fn publish_gated(node: &Node, clip: &Path, gate: &str, state: &Path) -> String {
    let published = publish(
        &node.info.api_url,
        clip,
        &["--ladder", "360p", "--gate", gate],
        state,
    )
    .unwrap_or_else(|e| panic!("publish failed: {e}\n{}", node.log()));
    published.manifest_id.clone()
}

/// `streamgate sign-in` with the key in an environment variable; the session token.
fn sign_in(node: &Node, key: &str, extra: &[&str]) -> Result<String, String> {
    let out = Command::new(bin("streamgate"))
        .env("SG_TEST_KEY", key)
        .args([
            "--node",
            &node.info.api_url,
            "sign-in",
            "--private-key-env",
            "SG_TEST_KEY",
        ])
        .args(extra)
        .output()
        .expect("sign-in");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn key_status(node: &Node, id: &str, token: Option<&str>) -> (u16, Value) {
    call(
        "GET",
        &format!("{}/keys/{id}", node.info.api_url),
        token,
        None,
    )
}

fn plays(node: &Node, id: &str, token: &str) -> Result<usize, String> {
    let master = format!("{}/hls/{id}/master.m3u8", node.info.api_url);
    let header = format!("Authorization: Bearer {token}\r\n");
    let errors = decode_errors(&master, &["-headers", &header]).map_err(|e| e.to_string())?;
    if !errors.is_empty() {
        return Err(errors);
    }
    let playlist = format!("{}/hls/{id}/360p/index.m3u8", node.info.api_url);
    video_frames(&playlist, &["-headers", &header])
        .map(|f| f.len())
        .map_err(|e| e.to_string())
}

/// Frames of the 360p rung played by FFmpeg through `streamgate play --no-player`.
fn played_through_cli(node: &Node, id: &str, token: &str) -> Result<usize, String> {
    use std::io::BufRead;
    let mut child = Command::new(bin("streamgate"))
        .env("SG_SESSION", token)
        .args(["--node", &node.info.api_url, "play", id])
        .args(["--session-env", "SG_SESSION", "--no-player"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("streamgate play");
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
    }
    let master = line.trim().to_string();
    let frames = if master.starts_with("http://127.0.0.1:") && !master.contains(token) {
        video_frames(&master.replace("master.m3u8", "360p/index.m3u8"), &[])
            .map(|f| f.len())
            .map_err(|e| e.to_string())
    } else {
        Err(format!("streamgate play printed {master:?}"))
    };
    let _ = child.kill();
    let _ = child.wait();
    frames
}

#[test]
fn erc721_and_erc1155_holders_play_gated_video_and_others_are_refused() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let chain = runtime.block_on(TestChain::start(31337)).expect("chain");
    let root = tempfile::tempdir().expect("tempdir");
    let node = gated_node(&root.path().join("node"), &[(31337, chain.rpc_url(), None)]);
    let clip = root.path().join("clip.mp4");
    make_clip(&clip, 6, "640x360", 30, true).expect("clip");
    let (holder, holder_key) = chain.account(1);
    let (stranger, stranger_key) = chain.account(2);
    let (fan, fan_key) = chain.account(3);
    let token = runtime.block_on(chain.mint_pass(holder)).expect("mint");
    runtime
        .block_on(chain.mint_1155(fan, 7, 2))
        .expect("mint 1155");
    let state = root.path().join("state");
    let id721 = publish_gated(
        &node,
        &clip,
        &format!("erc721:31337:{}", chain.pass),
        &state,
    );
    let id1155 = publish_gated(
        &node,
        &clip,
        &format!("erc1155:31337:{}:7:2", chain.pass1155),
        &state,
    );

    // The holder signs in and FFmpeg plays the stream to the end with the token.
    let holder_token = sign_in(&node, &holder_key, &[]).expect("holder signs in");
    assert_eq!(
        plays(&node, &id721, &holder_token),
        Ok(180),
        "holder playback"
    );
    let fan_token = sign_in(&node, &fan_key, &[]).expect("fan signs in");
    assert_eq!(
        plays(&node, &id1155, &fan_token),
        Ok(180),
        "ERC-1155 holder playback"
    );
    assert_eq!(
        key_status(&node, &id1155, Some(&holder_token)).0,
        403,
        "no ERC-1155 balance"
    );

    // `streamgate play` keeps the token off the player's command line: the player is
    // given a loopback URL, and the CLI adds the token as it forwards.
    assert_eq!(
        played_through_cli(&node, &id721, &holder_token),
        Ok(180),
        "holder playback through streamgate play"
    );

    // Without a session: 401. Without the token: 403, and the ciphertext does not decode.
    assert_eq!(key_status(&node, &id721, None).0, 401);
    let stranger_token = sign_in(&node, &stranger_key, &[]).expect("stranger signs in");
    let (code, body) = key_status(&node, &id721, Some(&stranger_token));
    assert_eq!(
        (code, body["error"].as_str()),
        (403, Some("not_entitled")),
        "{body}"
    );
    let info: Value = serde_json::from_slice(
        &streamgate_tests::cli(&node.info.api_url, &["--json", "info", &id721]).stdout,
    )
    .expect("info");
    let track = &info["manifest"]["tracks"][0];
    let init = runtime
        .block_on(async {
            let url = format!(
                "{}/blob/{}",
                node.info.api_url,
                track["init"]["hash"].as_str().expect("hash")
            );
            http_client().get(url).send().await?.bytes().await
        })
        .expect("init");
    let cipher = runtime
        .block_on(async {
            let url = format!(
                "{}/blob/{}",
                node.info.api_url,
                track["segments"][0]["hash"].as_str().expect("hash")
            );
            http_client().get(url).send().await?.bytes().await
        })
        .expect("segment");
    let joined = root.path().join("cipher.mp4");
    std::fs::write(&joined, [init.as_ref(), cipher.as_ref()].concat()).expect("write");
    let decoded = video_frames(joined.to_str().expect("utf-8"), &[])
        .map(|f| f.len())
        .unwrap_or(0);
    assert_eq!(decoded, 0, "ciphertext fetched as a blob decoded to frames");

    // The holder gives the pass away: refused within 10 seconds; the new owner is let in.
    assert_eq!(key_status(&node, &id721, Some(&holder_token)).0, 200);
    runtime
        .block_on(chain.transfer_pass(1, stranger, token))
        .expect("transfer");
    let moved = Instant::now();
    let mut refused = false;
    while moved.elapsed() < Duration::from_secs(10) {
        if key_status(&node, &id721, Some(&holder_token)).0 == 403 {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        refused,
        "the old owner still got the key 10 s after the transfer\n{}",
        node.log()
    );
    assert_eq!(
        key_status(&node, &id721, Some(&stranger_token)).0,
        200,
        "the new owner"
    );
    let _ = stranger;
}

#[test]
fn each_bad_sign_in_is_refused_with_its_own_error() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let chain = runtime.block_on(TestChain::start(31337)).expect("chain");
    let root = tempfile::tempdir().expect("tempdir");
    let node = gated_node(&root.path().join("node"), &[(31337, chain.rpc_url(), None)]);
    let (_, key) = chain.account(1);
    let (_, other_key) = chain.account(2);
    let signer: PrivateKeySigner = key.parse().expect("key");
    let other: PrivateKeySigner = other_key.parse().expect("key");
    let client = http_client();
    let api = node.info.api_url.clone();
    let hello = call("GET", &format!("{api}/api/v1/auth/nonce"), None, None).1;
    let domain = hello["domain"].as_str().expect("domain").to_string();
    let origin = hello["origin"].as_str().expect("origin").to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let fresh_nonce = || -> String {
        let hello = call("GET", &format!("{api}/api/v1/auth/nonce"), None, None).1;
        hello["nonce"].as_str().unwrap_or_default().to_string()
    };
    let message = |nonce: String| SiweMessage {
        scheme: None,
        domain: domain.clone(),
        address: signer.address(),
        statement: None,
        uri: origin.clone(),
        version: "1".into(),
        chain_id: 31337,
        nonce,
        issued_at: now,
        expiration_time: Some(now + 600),
        not_before: None,
        request_id: None,
        resources: vec![],
    };
    let attempt = |text: &str, signature: String| -> (u16, String) {
        runtime.block_on(async {
            let r = client
                .post(format!("{api}/api/v1/auth/siwe"))
                .json(&serde_json::json!({ "message": text, "signature": signature }))
                .send()
                .await
                .expect("post");
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            (status, v["error"].as_str().unwrap_or("").to_string())
        })
    };
    let sign = |s: &PrivateKeySigner, text: &str| -> String {
        let sig = runtime
            .block_on(s.sign_message(text.as_bytes()))
            .expect("sign");
        format!("0x{}", hex::encode(sig.as_bytes()))
    };

    let good = message(fresh_nonce()).to_text();
    assert_eq!(
        attempt(&good, format!("0x{}", "00".repeat(65))),
        (401, "bad_signature".into()),
        "forged signature"
    );
    let good = message(fresh_nonce()).to_text();
    assert_eq!(
        attempt(&good, sign(&other, &good)),
        (401, "wrong_signer".into()),
        "another address signed"
    );
    let once = message(fresh_nonce()).to_text();
    assert_eq!(
        attempt(&once, sign(&signer, &once)).0,
        200,
        "a good sign-in works"
    );
    assert_eq!(
        attempt(&once, sign(&signer, &once)),
        (401, "nonce_reused".into()),
        "reused nonce"
    );
    let invented = message("neverissued1".into()).to_text();
    assert_eq!(
        attempt(&invented, sign(&signer, &invented)),
        (401, "unknown_nonce".into())
    );
    let mut expired = message(fresh_nonce());
    expired.issued_at = now - 7200;
    expired.expiration_time = Some(now - 3600);
    let expired = expired.to_text();
    assert_eq!(
        attempt(&expired, sign(&signer, &expired)),
        (422, "expired".into())
    );
    let mut domain_wrong = message(fresh_nonce());
    domain_wrong.domain = "evil.example".into();
    let domain_wrong = domain_wrong.to_text();
    assert_eq!(
        attempt(&domain_wrong, sign(&signer, &domain_wrong)),
        (422, "wrong_domain".into())
    );
    let mut chain_wrong = message(fresh_nonce());
    chain_wrong.chain_id = 1;
    let chain_wrong = chain_wrong.to_text();
    assert_eq!(
        attempt(&chain_wrong, sign(&signer, &chain_wrong)),
        (422, "wrong_chain".into())
    );
    let garbage = "hello node, let me in";
    assert_eq!(
        attempt(garbage, sign(&signer, garbage)),
        (400, "malformed_message".into())
    );
}

#[test]
fn a_contract_wallet_signs_in_and_two_chains_each_gate_a_video() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let first = runtime.block_on(TestChain::start(31337)).expect("chain 1");
    let second = runtime.block_on(TestChain::start(31338)).expect("chain 2");
    let root = tempfile::tempdir().expect("tempdir");
    let node = gated_node(
        &root.path().join("node"),
        &[
            (31337, first.rpc_url(), None),
            (31338, second.rpc_url(), None),
        ],
    );
    let clip = root.path().join("clip.mp4");
    make_clip(&clip, 4, "640x360", 30, true).expect("clip");
    let state = root.path().join("state");
    let on_first = publish_gated(
        &node,
        &clip,
        &format!("erc721:31337:{}", first.pass),
        &state,
    );
    let on_second = publish_gated(
        &node,
        &clip,
        &format!("erc721:31338:{}", second.pass),
        &state,
    );

    // A contract wallet (ERC-1271) owned by account 4 holds a pass on the first chain.
    let wallet = runtime.block_on(first.deploy_wallet(4)).expect("wallet");
    runtime
        .block_on(first.mint_pass(wallet))
        .expect("mint to wallet");
    let (_, owner_key) = first.account(4);
    let wallet_token = sign_in(
        &node,
        &owner_key,
        &["--as", &wallet.to_string(), "--chain-id", "31337"],
    )
    .expect("contract wallet signs in");
    assert_eq!(plays(&node, &on_first, &wallet_token), Ok(120));
    assert_eq!(
        key_status(&node, &on_second, Some(&wallet_token)).0,
        403,
        "no pass on chain 2"
    );
    // The same address holds a pass on chain 2, where no contract lives at it (anyone may
    // deploy one there, or hold its key): the sign-in proven on chain 1 does not carry over.
    runtime
        .block_on(second.mint_pass(wallet))
        .expect("mint to the wallet's address on chain 2");
    let (code, body) = key_status(&node, &on_second, Some(&wallet_token));
    assert_eq!(
        (code, body["error"].as_str()),
        (403, Some("wallet_not_on_chain")),
        "{body}"
    );

    // Account 5 holds a pass on the second chain only.
    let (holder, holder_key) = second.account(5);
    runtime
        .block_on(second.mint_pass(holder))
        .expect("mint on chain 2");
    let token = sign_in(&node, &holder_key, &["--chain-id", "31338"]).expect("sign in on chain 2");
    assert_eq!(plays(&node, &on_second, &token), Ok(120));
    assert_eq!(
        key_status(&node, &on_first, Some(&token)).0,
        403,
        "no pass on chain 1"
    );
}

#[test]
fn the_registry_entry_of_the_registrant_overrides_the_manifest_and_a_dead_rpc_fails_closed() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let chain = runtime.block_on(TestChain::start(31337)).expect("chain");
    let root = tempfile::tempdir().expect("tempdir");
    let node = gated_node(
        &root.path().join("node"),
        &[(31337, chain.rpc_url(), Some(chain.registry))],
    );
    let clip = root.path().join("clip.mp4");
    make_clip(&clip, 4, "640x360", 30, true).expect("clip");
    let (holder, holder_key) = chain.account(1);
    let (creator, _) = chain.account(3);
    runtime.block_on(chain.mint_pass(holder)).expect("mint");
    let gate = format!("erc721:31337:{}", chain.pass);
    let registrant = creator.to_string();
    let published = publish(
        &node.info.api_url,
        &clip,
        &[
            "--ladder",
            "360p",
            "--gate",
            &gate,
            "--registrant",
            &registrant,
        ],
        &root.path().join("state"),
    )
    .unwrap_or_else(|e| panic!("publish failed: {e}"));
    let id = published.manifest_id.clone();
    let mut manifest_id = [0u8; 32];
    hex::decode_to_slice(&id, &mut manifest_id).expect("hex");
    let holder_token = sign_in(&node, &holder_key, &[]).expect("sign in");
    assert_eq!(
        key_status(&node, &id, Some(&holder_token)).0,
        200,
        "gated on the pass the holder has"
    );

    // Someone else registers the video first, gated on a contract nobody holds: ignored.
    let decoy = runtime
        .block_on(chain.deploy_pass())
        .expect("decoy pass contract");
    runtime
        .block_on(chain.register_gate(5, manifest_id, decoy))
        .expect("stranger registers");
    assert_eq!(
        key_status(&node, &id, Some(&holder_token)).0,
        200,
        "a stranger's entry changed nothing"
    );

    // The registrant's entry on the chain wins over the manifest: gated on a pass nobody holds.
    let registry_gate = runtime
        .block_on(chain.deploy_pass())
        .expect("second pass contract");
    runtime
        .block_on(chain.register_gate(3, manifest_id, registry_gate))
        .expect("registrant registers");
    let (code, body) = key_status(&node, &id, Some(&holder_token));
    assert_eq!(
        (code, body["error"].as_str()),
        (403, Some("not_entitled")),
        "the chain's policy wins: {body}"
    );

    // The RPC goes away: 503, never a key, once the cached grant can no longer be trusted
    // (the chain's event follower notices within seconds).
    let rpc_url = chain.rpc_url();
    drop(chain);
    let mut last = (0, Value::Null);
    let mut released = false;
    let unavailable = wait_until(Duration::from_secs(30), || {
        last = key_status(&node, &id, Some(&holder_token));
        released |= last.0 == 200;
        last.0 == 503
    });
    assert!(
        !released,
        "a key was released while the chain was going away"
    );
    assert!(
        unavailable,
        "still answering {} with the chain gone",
        last.0
    );
    let (code, body) = last;
    assert_eq!(
        (code, body["error"].as_str()),
        (503, Some("chain_unavailable")),
        "{body}"
    );
    // RPC URLs often carry API keys: the answer names the chain, not the URL.
    assert!(
        !body.to_string().contains(&rpc_url) && !body.to_string().contains("127.0.0.1"),
        "{body}"
    );
}

/// `METHOD url` with an optional bearer token and body; the status and the JSON answer.
fn call(method: &str, url: &str, token: Option<&str>, body: Option<Vec<u8>>) -> (u16, Value) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = http_client().request(method, url);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.body(b);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    })
}

#[test]
fn a_manifest_reusing_another_videos_key_wraps_releases_nothing_by_any_route() {
    use ed25519_dalek::SigningKey;
    use streamgate_protocol::SignedManifest;

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let chain = runtime.block_on(TestChain::start(31337)).expect("chain");
    let root = tempfile::tempdir().expect("tempdir");
    let bootstrap = start_bootstrap(&root.path().join("bootstrap")).expect("bootstrap");
    let entry = vec![bootstrap.info.listen_addrs[0].clone()];
    let chains = [(31337, chain.rpc_url(), Some(chain.registry))];
    let key_server = gated_node_joining(&root.path().join("key-server"), &chains, &entry);
    // A node the attacker runs, in the same swarm.
    let attackers_node = gated_node_joining(&root.path().join("attacker"), &chains, &entry);
    let clip = root.path().join("clip.mp4");
    make_clip(&clip, 4, "640x360", 30, true).expect("clip");
    let (holder, holder_key) = chain.account(1);
    let (creator, _) = chain.account(3);
    let (attacker, attacker_eth_key) = chain.account(4);
    runtime.block_on(chain.mint_pass(holder)).expect("mint");
    // What the attacker does hold: their own token, to gate their copy on.
    runtime
        .block_on(chain.mint_1155(attacker, 99, 1))
        .expect("attacker's own token");
    let registrant = creator.to_string();
    let victim_id = publish(
        &key_server.info.api_url,
        &clip,
        &[
            "--ladder",
            "360p",
            "--gate",
            &format!("erc721:31337:{}", chain.pass),
            "--registrant",
            &registrant,
        ],
        &root.path().join("state"),
    )
    .unwrap_or_else(|e| panic!("publish failed: {e}"))
    .manifest_id;
    let holder_token = sign_in(&key_server, &holder_key, &[]).expect("holder signs in");
    assert_eq!(
        key_status(&key_server, &victim_id, Some(&holder_token)).0,
        200
    );
    let attacker_token = sign_in(&key_server, &attacker_eth_key, &[]).expect("attacker signs in");
    assert_eq!(
        key_status(&key_server, &victim_id, Some(&attacker_token)).0,
        403,
        "no pass, no key"
    );

    // The manifest is public: the attacker reads it and re-signs its key wraps as their own.
    let api = &key_server.info.api_url;
    let runtime_get = |url: String| {
        runtime.block_on(async {
            http_client()
                .get(url)
                .send()
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes")
                .to_vec()
        })
    };
    let victim = SignedManifest::decode_verified(&runtime_get(format!("{api}/blob/{victim_id}")))
        .expect("the victim's manifest");
    let attacker_ed = SigningKey::from_bytes(&[0xa7; 32]);
    let forge = |relax: &dyn Fn(&mut streamgate_protocol::Manifest)| {
        let mut manifest = victim.manifest.clone();
        manifest.creator = attacker_ed.verifying_key().to_bytes();
        manifest.title = "free to watch".into();
        relax(&mut manifest);
        manifest.sign(&attacker_ed)
    };
    // Gated on a token the attacker holds.
    let own_policy = forge(&|m| {
        m.access = Some(
            format!("erc1155:31337:{}:99:1", chain.pass1155)
                .parse()
                .expect("gate"),
        );
    });
    // Registered by the attacker as public in the ContentRegistry.
    let registered_public = forge(&|m| {
        if let Some(access) = &mut m.access {
            access.registrant = Some(attacker);
        }
    });
    runtime
        .block_on(chain.register_public(4, *registered_public.id().as_bytes()))
        .expect("attacker registers their copy as public");
    let blobs_before = status(api).expect("status").blobs;
    let operator = operator_token(api);

    for forged in [own_policy, registered_public] {
        let (bytes, id) = (forged.encode(), forged.id().to_string());
        // Straight to the key server: no operator token, no upload at all.
        let (code, body) = call(
            "POST",
            &format!("{api}/api/v1/blobs"),
            None,
            Some(bytes.clone()),
        );
        assert_eq!(
            (code, body["error"].as_str()),
            (401, Some("operator_token_required"))
        );
        // An operator tricked into adding it: refused, and the answer says why.
        let (code, body) = call(
            "POST",
            &format!("{api}/api/v1/blobs"),
            Some(&operator),
            Some(bytes.clone()),
        );
        assert_eq!(
            (code, body["error"].as_str()),
            (422, Some("manifest_refused")),
            "{body}"
        );
        assert!(
            body["message"].as_str().unwrap_or("").contains("copied"),
            "{body}"
        );

        // Through the swarm: the attacker's node stores and provides it (it holds no wrap, so
        // it cannot tell), and the key server is asked for it by every route that reads.
        let theirs = &attackers_node.info.api_url;
        let (code, body) = call(
            "POST",
            &format!("{theirs}/api/v1/blobs"),
            Some(&operator_token(theirs)),
            Some(bytes),
        );
        assert_eq!(code, 201, "the attacker's node takes it: {body}");
        let mut last = (0, Value::Null);
        let found = wait_until(Duration::from_secs(30), || {
            last = call("GET", &format!("{api}/api/v1/manifests/{id}"), None, None);
            last.0 != 404
        });
        assert!(
            found,
            "the key server never found the forged manifest: {:?}",
            last
        );
        let refused = |(code, body): (u16, Value)| {
            code == 422
                && body["error"] == "invalid_manifest"
                && body["message"].as_str().unwrap_or("").contains("copied")
        };
        assert!(refused(last.clone()), "manifest: {last:?}");
        for (method, path, token) in [
            ("GET", format!("/hls/{id}/master.m3u8"), None),
            ("GET", format!("/hls/{id}/360p/index.m3u8"), None),
            ("GET", format!("/keys/{id}"), Some(attacker_token.as_str())),
            ("GET", format!("/keys/{id}"), Some(holder_token.as_str())),
            (
                "POST",
                format!("/api/v1/manifests/{id}/pin"),
                Some(operator.as_str()),
            ),
        ] {
            let answer = call(method, &format!("{api}{path}"), token, None);
            assert!(refused(answer.clone()), "{method} {path}: {answer:?}");
        }
        let (_, listed) = call("GET", &format!("{api}/api/v1/manifests"), None, None);
        assert!(
            !listed.to_string().contains(&id),
            "the forged manifest is listed: {listed}"
        );
    }
    // Nothing was kept, so nothing is provided, now or after a restart.
    assert_eq!(status(api).expect("status").blobs, blobs_before);

    // The registry cannot relax someone else's video: the attacker's public entry for the
    // victim's id is not the registrant's, so it counts for nothing.
    let mut victim_bytes = [0u8; 32];
    hex::decode_to_slice(&victim_id, &mut victim_bytes).expect("hex");
    runtime
        .block_on(chain.register_public(4, victim_bytes))
        .expect("attacker registers the victim's id");
    let (code, body) = key_status(&key_server, &victim_id, Some(&attacker_token));
    assert_eq!(
        (code, body["error"].as_str()),
        (403, Some("not_entitled")),
        "{body}"
    );
    assert_eq!(
        key_status(&key_server, &victim_id, Some(&holder_token)).0,
        200
    );
}

/// [`gated_node`] that joins the swarm through `bootstrap`.
fn gated_node_joining(
    dir: &Path,
    chains: &[(u64, String, Option<Address>)],
    bootstrap: &[String],
) -> Node {
    let mut config = test_config();
    config.chains = chains
        .iter()
        .map(|(id, url, registry)| ChainConfig {
            chain_id: *id,
            rpc_urls: vec![url.clone()],
            registry: registry.map(|r| r.to_string()),
        })
        .collect();
    init_node_dir(dir, &config).expect("init");
    start_node(dir, bootstrap).expect("node")
}

#[test]
fn sign_in_and_key_requests_stay_on_the_node_they_were_meant_for() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let chain = runtime.block_on(TestChain::start(31337)).expect("chain");
    let root = tempfile::tempdir().expect("tempdir");
    let (_, key) = chain.account(1);

    // A node claiming another domain than the URL the CLI was given: the CLI signs nothing.
    let mut config = test_config();
    config.access.public_origin = "https://node.example.org".into();
    config.chains = vec![ChainConfig {
        chain_id: 31337,
        rpc_urls: vec![chain.rpc_url()],
        registry: None,
    }];
    let liar_dir = root.path().join("liar");
    init_node_dir(&liar_dir, &config).expect("init");
    let liar = start_node(&liar_dir, &[]).expect("node");
    let refused = sign_in(&liar, &key, &[]).expect_err("signed in for another domain");
    assert!(
        refused.contains("refusing to sign in for another domain")
            && refused.contains("node.example.org"),
        "{refused}"
    );

    // A node without a wrap of the key serves the gated playlist with a same-origin key
    // URI, and there answers which key servers hold the key.
    let bootstrap = start_bootstrap(&root.path().join("bootstrap")).expect("bootstrap");
    let entry = vec![bootstrap.info.listen_addrs[0].clone()];
    let chains = [(31337, chain.rpc_url(), None)];
    let publisher = gated_node_joining(&root.path().join("publisher"), &chains, &entry);
    let other = gated_node_joining(&root.path().join("other"), &chains, &entry);
    let clip = root.path().join("clip.mp4");
    make_clip(&clip, 4, "640x360", 30, true).expect("clip");
    let id = publish_gated(
        &publisher,
        &clip,
        &format!("erc721:31337:{}", chain.pass),
        &root.path().join("state"),
    );
    let playlist_url = format!("{}/hls/{id}/360p/index.m3u8", other.info.api_url);
    let mut playlist = String::new();
    let served = wait_until(Duration::from_secs(30), || {
        playlist = runtime.block_on(async {
            match http_client().get(&playlist_url).send().await {
                Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
                _ => String::new(),
            }
        });
        !playlist.is_empty()
    });
    assert!(served, "the other node never served the playlist");
    let key_lines: Vec<&str> = playlist
        .lines()
        .filter(|l| l.starts_with("#EXT-X-KEY"))
        .collect();
    let same_origin = format!("#EXT-X-KEY:METHOD=AES-128,URI=\"/keys/{id}\",IV=0x");
    assert!(
        !key_lines.is_empty() && key_lines.iter().all(|l| l.starts_with(&same_origin)),
        "{playlist}"
    );
    let token = sign_in(&other, &key, &[]).expect("sign in on the other node");
    let (code, body) = key_status(&other, &id, Some(&token));
    assert_eq!(
        (code, body["error"].as_str()),
        (409, Some("no_key_here")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains(&publisher.info.api_url),
        "{body}"
    );
}

#[test]
fn a_transfer_landing_between_the_chain_answer_and_the_cache_insert_leaves_no_grant() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let chain = runtime.block_on(TestChain::start(31337)).expect("chain");
    let root = tempfile::tempdir().expect("tempdir");
    let mut config = test_config();
    config.chains = vec![ChainConfig {
        chain_id: 31337,
        rpc_urls: vec![chain.rpc_url()],
        registry: None,
    }];
    // Every granting ownership check waits 5 s between the chain's answer and caching it.
    config.testing.ownership_check_delay_ms = Some(5000);
    let dir = root.path().join("node");
    init_node_dir(&dir, &config).expect("init");
    let node = start_node(&dir, &[]).expect("node");
    let clip = root.path().join("clip.mp4");
    make_clip(&clip, 2, "640x360", 30, true).expect("clip");
    let (holder, holder_key) = chain.account(1);
    let (buyer, _) = chain.account(2);
    let token_id = runtime.block_on(chain.mint_pass(holder)).expect("mint");
    let id = publish_gated(
        &node,
        &clip,
        &format!("erc721:31337:{}", chain.pass),
        &root.path().join("state"),
    );
    let token = sign_in(&node, &holder_key, &[]).expect("sign in");

    // The check asks the chain (the holder still owns the pass), then waits; the pass is
    // sold during that wait, after the answer and before the insert.
    let started = Instant::now();
    let in_flight = {
        let (url, token) = (format!("{}/keys/{id}", node.info.api_url), token.clone());
        std::thread::spawn(move || call("GET", &url, Some(&token), None).0)
    };
    std::thread::sleep(Duration::from_secs(1));
    runtime
        .block_on(chain.transfer_pass(1, buyer, token_id))
        .expect("transfer");
    let sold = Instant::now();
    // Once the follower has seen the sale, more blocks move it out of the window the follower
    // reads again each tick: the insert that follows meets nothing but its own check.
    std::thread::sleep(Duration::from_millis(1500));
    runtime.block_on(chain.mine(20)).expect("mine");
    assert_eq!(
        in_flight.join().expect("request"),
        200,
        "the check in flight read the chain before the sale"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "the answer came back before the sale was mined"
    );

    // What was answered during the sale is not cached: the next request asks again.
    let mut last = 0;
    let refused = wait_until(Duration::from_secs(10), || {
        last = key_status(&node, &id, Some(&token)).0;
        last == 403
    });
    assert!(
        refused,
        "still answering {last} {:?} after the sale",
        sold.elapsed()
    );
    assert!(sold.elapsed() <= Duration::from_secs(10));
}

#[test]
fn a_flood_of_nonce_requests_is_rate_limited_and_a_sign_in_begun_before_it_succeeds() {
    use futures::StreamExt;

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let chain = runtime.block_on(TestChain::start(31337)).expect("chain");
    let root = tempfile::tempdir().expect("tempdir");
    let node = gated_node(&root.path().join("node"), &[(31337, chain.rpc_url(), None)]);
    let api = node.info.api_url.clone();
    let (_, key) = chain.account(1);
    let signer: PrivateKeySigner = key.parse().expect("key");
    let client = http_client();

    // A viewer begins signing in: a nonce, and the message their wallet signs.
    let hello = call("GET", &format!("{api}/api/v1/auth/nonce"), None, None).1;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let message = SiweMessage {
        scheme: None,
        domain: hello["domain"].as_str().expect("domain").into(),
        address: signer.address(),
        statement: None,
        uri: hello["origin"].as_str().expect("origin").into(),
        version: "1".into(),
        chain_id: 31337,
        nonce: hello["nonce"].as_str().expect("nonce").into(),
        issued_at: now,
        expiration_time: Some(now + 600),
        not_before: None,
        request_id: None,
        resources: Vec::new(),
    }
    .to_text();
    let signature = runtime
        .block_on(signer.sign_message(message.as_bytes()))
        .expect("sign");
    let body = serde_json::json!({
        "message": message,
        "signature": format!("0x{}", hex::encode(signature.as_bytes())),
    });

    // Meanwhile one address asks for 100,000 nonces, 64 at a time.
    const FLOOD: usize = 100_000;
    let (granted, limited, retry_after_missing) = runtime.block_on(async {
        let answers: Vec<(u16, bool)> = futures::stream::iter(0..FLOOD)
            .map(|_| {
                let (client, api) = (client.clone(), api.clone());
                async move {
                    match client.get(format!("{api}/api/v1/auth/nonce")).send().await {
                        Ok(r) => (
                            r.status().as_u16(),
                            r.headers().contains_key(reqwest::header::RETRY_AFTER),
                        ),
                        Err(e) => {
                            eprintln!("nonce request failed: {e:?}");
                            (0, false)
                        }
                    }
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        (
            answers.iter().filter(|(s, _)| *s == 200).count(),
            answers.iter().filter(|(s, _)| *s == 429).count(),
            answers.iter().filter(|(s, r)| *s == 429 && !r).count(),
        )
    });
    assert_eq!(
        granted + limited,
        FLOOD,
        "every request answered 200 or 429"
    );
    assert!(
        limited > FLOOD * 9 / 10,
        "only {limited} of {FLOOD} were limited ({granted} nonces handed out)"
    );
    assert_eq!(retry_after_missing, 0, "every 429 says when to retry");

    // The sign-in begun before the flood completes.
    let (status, session) = runtime.block_on(async {
        let response = client
            .post(format!("{api}/api/v1/auth/siwe"))
            .json(&body)
            .send()
            .await
            .expect("sign in");
        let status = response.status().as_u16();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    });
    assert_eq!(status, 200, "{session}");
    assert!(session["token"].as_str().is_some_and(|t| t.len() == 64));

    // Sign-in takes JSON only (a form elsewhere cannot post one), and refuses what is too
    // large to be a sign-in before looking at it.
    let post = |content_type: &str, body: String| {
        runtime.block_on(async {
            let response = client
                .post(format!("{api}/api/v1/auth/siwe"))
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body)
                .send()
                .await
                .expect("post");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        })
    };
    let (status, answer) = post("text/plain", body.to_string());
    assert_eq!(
        (status, answer["error"].as_str()),
        (415, Some("json_required"))
    );
    let huge = serde_json::json!({ "message": "x".repeat(5000), "signature": "0x00" });
    let (status, answer) = post("application/json", huge.to_string());
    assert_eq!(
        (status, answer["error"].as_str()),
        (413, Some("too_large")),
        "{answer}"
    );
}
