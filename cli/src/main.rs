//! `streamgate`: the creator and operator CLI. It talks to a node's local HTTP API.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, anyhow, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use streamgate_api::{
    cli::Fetched,
    v1::{Added, ErrorBody, JobView, NodeStatus, SegmentReport, SegmentReported, WorkerInfo},
};
use streamgate_protocol::ContentHash;

mod play;
mod publish;
mod signin;

#[derive(Parser)]
#[command(
    name = "streamgate",
    version,
    about = "Publish, fetch and inspect content on a StreamGate node"
)]
struct Cli {
    /// The node's HTTP API [default: the API of the node whose --data-dir is given, else
    /// http://127.0.0.1:7700].
    #[arg(long, global = true, env = "STREAMGATE_NODE")]
    node: Option<String>,
    /// The node's data folder, to read its operator token (`api.token`) from: publishing,
    /// adding, pinning and job control need it.
    #[arg(long, global = true, env = "STREAMGATE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The operator token file itself, when the data folder is not at hand (a copy of
    /// `DATA_DIR/api.token`, kept private).
    #[arg(
        long,
        global = true,
        env = "STREAMGATE_TOKEN_FILE",
        value_name = "PATH"
    )]
    token_file: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Store a file on the node as a blob and print its BLAKE3 hash.
    Add { file: PathBuf },
    /// Fetch a blob (from the node, or through it from the swarm) and write the verified bytes.
    Get {
        hash: String,
        /// Where to write; the file appears only once every byte is verified.
        #[arg(short, long, value_name = "PATH")]
        output: PathBuf,
    },
    /// Show the node's identity, peers and storage.
    Status,
    /// Upload a video (resumably: rerun the same command to continue an interrupted upload),
    /// transcode it on the node into an adaptive ladder, and print its HLS and DASH URLs.
    Publish {
        file: PathBuf,
        /// Title shown by players (default: the file name).
        #[arg(long)]
        title: Option<String>,
        /// Rungs to encode, e.g. 1080p,720p,480p (default: the node's transcode.ladder).
        #[arg(long)]
        ladder: Option<String>,
        /// Cap the upload at this many bytes per second (for slow or shared links).
        #[arg(long, value_name = "BYTES_PER_SEC")]
        upload_rate: Option<u64>,
        /// Gate the video on an NFT: erc721:CHAIN_ID:0xCONTRACT[:TOKEN_ID] or
        /// erc1155:CHAIN_ID:0xCONTRACT:TOKEN_ID[:MIN_BALANCE]. Segments are then encrypted.
        #[arg(long, value_name = "GATE")]
        gate: Option<String>,
        /// Another node that may release the key of the gated video, as NODE_ID@URL: the
        /// node id its `streamgate status` shows, and its public URL (repeatable). The key is
        /// sealed to that node id; nothing is asked of the URL.
        #[arg(long, value_name = "NODE_ID@URL")]
        key_server: Vec<String>,
        /// Your Ethereum account: its ContentRegistry entry for this video, if you make one,
        /// overrides the gate (entries by anyone else are ignored).
        #[arg(long, value_name = "0xADDRESS")]
        registrant: Option<String>,
    },
    /// List the videos (manifests) the node holds.
    Ls,
    /// List the volunteered transcoding workers the node has heard of: mode, codecs, price,
    /// load (each as the worker claims it).
    Workers,
    /// Sign in with an Ethereum key (EIP-4361) and print a session token for gated videos.
    SignIn {
        /// Environment variable holding the hex private key (never pass keys as arguments).
        #[arg(long, value_name = "VAR")]
        private_key_env: String,
        /// Chain to sign in on (default: the node's only chain).
        #[arg(long)]
        chain_id: Option<u64>,
        /// Sign in as this contract wallet (ERC-1271), with its owner's key.
        #[arg(long = "as", value_name = "0xADDRESS")]
        account: Option<alloy::primitives::Address>,
    },
    /// Play a gated video with the session token kept off every command line: serves the
    /// node's playlists, segments and key on a loopback port (adding the token) and starts
    /// the player on that URL.
    Play {
        /// The video's manifest id.
        id: String,
        /// Environment variable holding the session token `streamgate sign-in` printed.
        #[arg(long, value_name = "VAR", default_value = "STREAMGATE_SESSION")]
        session_env: String,
        /// The player to start with the loopback URL.
        #[arg(long, default_value = "ffplay")]
        player: String,
        /// Start no player: print the loopback URL and serve it until interrupted.
        #[arg(long)]
        no_player: bool,
    },
    /// Show one manifest: tracks, codecs, sizes, segments and URLs.
    Info { id: String },
    /// Stop a queued or running publishing job; it ends as cancelled and announces nothing.
    Cancel { job_id: String },
    /// Report a bad video segment found after publishing: the node traces it, through the
    /// manifest's work record and the receipt the worker signed, to the worker that made it,
    /// and lowers that worker's standing.
    Report {
        /// The video's manifest id.
        id: String,
        /// The segment's index (0 is the first), the same in every video rung.
        segment: u32,
        /// What is wrong with it.
        #[arg(long)]
        reason: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let running = cli
        .data_dir
        .as_deref()
        .and_then(<streamgate_api::ready::NodeReady as streamgate_api::ready::ReadyInfo>::read);
    let base = match (&cli.node, &running) {
        (Some(node), _) => node.trim_end_matches('/').to_string(),
        (None, Some(ready)) => ready.api_url.trim_end_matches('/').to_string(),
        (None, None) => DEFAULT_NODE.to_string(),
    };
    // A data folder's token goes only to that folder's node: with STREAMGATE_DATA_DIR set
    // for a local node, a command aimed at another node must not hand it over.
    if cli.token_file.is_none()
        && let (Some(dir), Some(ready)) = (&cli.data_dir, &running)
        && !same_origin(&ready.api_url, &base)
    {
        bail!(
            "{} is the data folder of the node at {}, not of {base}: its operator token is not sent there (for a node reached through a proxy, use --token-file)",
            dir.display(),
            ready.api_url
        );
    }
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = operator_token(cli.token_file.as_deref(), cli.data_dir.as_deref())? {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the operator token is not a valid header value")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    // The token goes to the node named by --node and nowhere else: no redirects are
    // followed, and upload URLs must be on the node's origin (publish.rs).
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .context("cannot build the HTTP client")?;
    match cli.command {
        Command::Add { file } => add(&client, &base, &file, cli.json).await,
        Command::Get { hash, output } => get(&client, &base, &hash, &output, cli.json).await,
        Command::Status => status(&client, &base, cli.json).await,
        Command::Publish {
            file,
            title,
            ladder,
            upload_rate,
            gate,
            key_server,
            registrant,
        } => {
            publish::publish(
                &client,
                &base,
                publish::PublishArgs {
                    file: &file,
                    title,
                    ladder,
                    json: cli.json,
                    upload_rate,
                    gate,
                    key_servers: key_server,
                    registrant,
                },
            )
            .await
        }
        Command::Ls => publish::list(&client, &base, cli.json).await,
        Command::Workers => workers(&client, &base, cli.json).await,
        Command::SignIn {
            private_key_env,
            chain_id,
            account,
        } => {
            signin::sign_in(
                &client,
                &base,
                signin::SignInArgs {
                    private_key_env,
                    chain_id,
                    account,
                    json: cli.json,
                },
            )
            .await
        }
        Command::Play {
            id,
            session_env,
            player,
            no_player,
        } => {
            play::play(
                &client,
                &base,
                play::PlayArgs {
                    id,
                    session_env,
                    player: (!no_player).then_some(player),
                },
            )
            .await
        }
        Command::Info { id } => publish::info(&client, &base, &id, cli.json).await,
        Command::Cancel { job_id } => cancel(&client, &base, &job_id, cli.json).await,
        Command::Report {
            id,
            segment,
            reason,
        } => report(&client, &base, &id, segment, reason, cli.json).await,
    }
}

async fn add(client: &reqwest::Client, base: &str, file: &Path, json: bool) -> anyhow::Result<()> {
    let handle = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("cannot open {}", file.display()))?;
    let size = handle.metadata().await?.len();
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
        handle,
        256 * 1024,
    ));
    let response = send(
        client
            .post(format!("{base}/api/v1/blobs"))
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body),
        base,
    )
    .await?;
    let added: Added = parse(response).await?;
    if json {
        println!("{}", serde_json::to_string(&added)?);
    } else {
        println!("{}", added.hash);
    }
    Ok(())
}

async fn get(
    client: &reqwest::Client,
    base: &str,
    hash: &str,
    output: &Path,
    json: bool,
) -> anyhow::Result<()> {
    let expected: ContentHash = hash
        .parse()
        .with_context(|| format!("{hash:?} is not a content hash"))?;
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let response = send(client.get(format!("{base}/blob/{expected}")), base).await?;
    // Written beside the target and renamed at the end: the target is either absent or whole.
    let mut temp = tempfile::Builder::new()
        .prefix(".streamgate-get-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("the transfer from the node was interrupted")?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        temp.write_all(&chunk)
            .context("cannot write the temporary file")?;
    }
    // The node verified every byte against the hash; HTTP between it and us is checked here.
    let actual = ContentHash::from_bytes(*hasher.finalize().as_bytes());
    if actual != expected {
        bail!("the bytes received hash to {actual}, not {expected}; nothing was written");
    }
    temp.as_file()
        .sync_all()
        .context("cannot flush the temporary file")?;
    temp.persist(output).map_err(|e| {
        anyhow!(
            "cannot move the file into place at {}: {}",
            output.display(),
            e.error
        )
    })?;
    if json {
        let fetched = Fetched {
            hash: expected.to_string(),
            size,
            path: output.display().to_string(),
        };
        println!("{}", serde_json::to_string(&fetched)?);
    } else {
        println!("{} bytes written to {}", size, output.display());
    }
    Ok(())
}

async fn workers(client: &reqwest::Client, base: &str, json: bool) -> anyhow::Result<()> {
    let response = send(client.get(format!("{base}/api/v1/workers")), base).await?;
    let workers: Vec<WorkerInfo> = parse(response).await?;
    if json {
        println!("{}", serde_json::to_string(&workers)?);
        return Ok(());
    }
    if workers.is_empty() {
        println!("no workers known to this node");
    }
    for w in workers {
        let gpus = w
            .gpus
            .iter()
            .map(|g| match g.encode_sessions {
                Some(0) => format!("{} (decode only)", g.name),
                Some(n) => format!("{} ({n} encode sessions)", g.name),
                None => g.name.clone(),
            })
            .collect::<Vec<_>>();
        println!(
            "{}  {:<22} jobs {}/{}  price {} wei/Gpx  speed {}  pay to {}",
            w.peer_id,
            w.mode,
            w.active_jobs,
            w.max_jobs,
            w.price_per_gigapixel,
            w.speed_fps
                .map(|s| format!("{s:.1} fps"))
                .unwrap_or_else(|| "not measured".into()),
            w.payment_address.as_deref().unwrap_or("none named")
        );
        let standing = match &w.standing {
            None => "no jobs from this node yet".to_string(),
            Some(s) => format!(
                "standing {} ({} verified, {} failed{})",
                s.score,
                s.successes,
                s.failures,
                if s.banned { ", offered no jobs" } else { "" }
            ),
        };
        println!("    {standing}");
        println!(
            "    encoders {}; decoders {}; GPUs {}",
            w.encoders.join(", "),
            w.decoders.join(", "),
            if gpus.is_empty() {
                "none".to_string()
            } else {
                gpus.join(", ")
            }
        );
    }
    Ok(())
}

async fn status(client: &reqwest::Client, base: &str, json: bool) -> anyhow::Result<()> {
    let response = send(client.get(format!("{base}/api/v1/status")), base).await?;
    let status: NodeStatus = parse(response).await?;
    if json {
        println!("{}", serde_json::to_string(&status)?);
        return Ok(());
    }
    let banned = status.providers.iter().filter(|p| p.banned).count();
    println!("peer id:          {}", status.peer_id);
    println!(
        "node id:          {} (name it as a key server: NODE_ID@URL)",
        status.node_id
    );
    println!("version:          {}", status.version);
    println!("connected peers:  {}", status.swarm.connected_peers);
    println!("DHT mode:         {}", status.swarm.dht_mode);
    let reach = &status.reachability;
    println!(
        "reachable at:     {}; relay {}",
        if status.data_plane_addrs.is_empty() {
            "no direct address".to_string()
        } else {
            status.data_plane_addrs.join(", ")
        },
        reach.relay_url.as_deref().unwrap_or("none")
    );
    println!(
        "data plane:       {}{}: {}",
        reach.mode.as_str(),
        reach
            .public_addr
            .as_deref()
            .map(|a| format!(" (public address {a})"))
            .unwrap_or_default(),
        reach.why
    );
    let swarm = &status.swarm;
    let probes = &swarm.autonat;
    println!(
        "libp2p:           {}; AutoNAT dial-backs {} ok, {} failed{}",
        match (
            swarm.public_addrs.is_empty(),
            swarm.relayed_addrs.is_empty()
        ) {
            (false, _) => format!("public at {}", swarm.public_addrs.join(", ")),
            (true, false) => format!(
                "behind NAT, reachable through relay {}",
                swarm.relayed_addrs.join(", ")
            ),
            (true, true) => "no confirmed address".to_string(),
        },
        probes.probes_ok,
        probes.probes_failed,
        probes
            .last_error
            .as_deref()
            .map(|e| format!(" (last: {e})"))
            .unwrap_or_default()
    );
    for peer in &reach.peers {
        println!(
            "  peer {}: {} via {} ({})",
            &peer.node_id[..peer.node_id.len().min(16)],
            peer.path.as_str(),
            peer.remote_addr,
            if peer.outgoing {
                "we dialled"
            } else {
                "it dialled"
            }
        );
    }
    println!(
        "blobs stored:     {} ({} bytes)",
        status.blobs, status.bytes_stored
    );
    println!(
        "bytes served:     {} to nodes, {} over HTTP",
        status.bytes_served, status.http.body_bytes_sent
    );
    println!(
        "fetches:          {} running, {} done, {} failed; provider lookups {} cached, {} from the DHT",
        status.fetch.in_flight,
        status.fetch.completed,
        status.fetch.failed,
        status.fetch.lookups_cached,
        status.fetch.lookups_dht
    );
    let lookups = &status.fetch.lookups;
    println!(
        "lookups:          {} in flight (max {}, {} per client), {} waiting (max {}); {} refused, not-found remembered {} s",
        lookups.in_flight,
        lookups.max_lookups,
        lookups.max_lookups_per_client,
        lookups.waiting,
        lookups.max_lookups_waiting,
        lookups.refused,
        lookups.not_found_ttl_secs
    );
    let http = &status.http;
    println!(
        "HTTP:             {} connections (max {}), {} requests in flight (max {}); {} refused, {} idle closed for room, {} timed out",
        http.open_connections,
        http.limits.max_connections,
        http.requests_in_flight,
        http.limits.max_requests_in_flight,
        http.connections_refused + http.requests_refused,
        http.idle_evicted,
        http.idle_timed_out + http.send_timed_out
    );
    println!(
        "HTTP timeouts:    header {} s, keep-alive {} s, send {} s, body {} s",
        http.limits.header_timeout_secs,
        http.limits.keep_alive_secs,
        http.limits.send_timeout_secs,
        http.limits.body_timeout_secs
    );
    let uploads = &status.uploads;
    println!(
        "uploads:          {} unfinished reserving {} of {} bytes; expire after {} s ({} expired); {} of {} ended jobs kept",
        uploads.unfinished,
        uploads.reserved_bytes,
        uploads.max_unfinished_bytes,
        uploads.expiry_secs,
        uploads.expired,
        uploads.ended_jobs,
        uploads.keep_ended_jobs
    );
    println!("rejected messages: {}", status.swarm.rejected_messages);
    println!(
        "providers known:  {} ({banned} banned)",
        status.providers.len()
    );
    Ok(())
}

async fn cancel(
    client: &reqwest::Client,
    base: &str,
    job_id: &str,
    json: bool,
) -> anyhow::Result<()> {
    let url = format!("{base}/api/v1/jobs/{job_id}/cancel");
    let job: JobView = parse(send(client.post(url), base).await?).await?;
    if json {
        println!("{}", serde_json::to_string(&job)?);
    } else {
        println!("cancelling job {} ({})", job.id, job.title);
    }
    Ok(())
}

async fn report(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    segment: u32,
    reason: String,
    json: bool,
) -> anyhow::Result<()> {
    let url = format!("{base}/api/v1/manifests/{id}/segments/{segment}/report");
    let request = client.post(url).json(&SegmentReport { reason });
    let reported: SegmentReported = parse(send(request, base).await?).await?;
    if json {
        println!("{}", serde_json::to_string(&reported)?);
        return Ok(());
    }
    let last = reported.first_segment + reported.segments.saturating_sub(1);
    println!(
        "segment {segment} was made by worker {} (segments {}-{last}, receipt {})",
        reported.worker, reported.first_segment, reported.receipt
    );
    if let Some(standing) = reported.standing {
        println!(
            "its standing here: score {}{}",
            standing.score,
            if standing.banned { ", banned" } else { "" }
        );
    }
    Ok(())
}

const DEFAULT_NODE: &str = "http://127.0.0.1:7700";

/// Whether two URLs have the same scheme, host and port.
pub(crate) fn same_origin(a: &str, b: &str) -> bool {
    match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// The operator token: from `--token-file`, else from `--data-dir`'s `api.token`; none when
/// neither is given (read-only commands need none).
fn operator_token(file: Option<&Path>, data_dir: Option<&Path>) -> anyhow::Result<Option<String>> {
    let path = match (file, data_dir) {
        (Some(file), _) => file.to_path_buf(),
        (None, Some(dir)) => streamgate_api::ready::operator_token_path(dir),
        (None, None) => return Ok(None),
    };
    streamgate_api::ready::read_operator_token(&path)
        .map(Some)
        .with_context(|| format!("cannot read the operator token {}", path.display()))
}

/// Reads a JSON answer of the node as the type the API promises.
pub(crate) async fn parse<T: DeserializeOwned>(response: reqwest::Response) -> anyhow::Result<T> {
    let text = response
        .text()
        .await
        .context("the node's answer was cut off")?;
    serde_json::from_str(&text)
        .context("the node's answer is not what this CLI expects (a different version?)")
}

/// Sends a request; a non-2xx answer becomes an error carrying the node's message.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    base: &str,
) -> anyhow::Result<reqwest::Response> {
    let response = request.send().await.map_err(|e| {
        if e.is_connect() {
            anyhow!("cannot reach the node at {base} (is streamgate-node running? set --node or STREAMGATE_NODE)")
        } else {
            anyhow!("request to {base} failed: {e}")
        }
    })?;
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status == reqwest::StatusCode::UNAUTHORIZED && text.contains("operator_token_required") {
        bail!(
            "the node at {base} wants its operator token for this: pass --data-dir with the node's data folder (or --token-file)"
        );
    }
    bail!("{} (HTTP {})", message_of(&text), status.as_u16())
}

/// The message of an error answer, or the whole text when it is not one.
pub(crate) fn message_of(text: &str) -> String {
    serde_json::from_str::<ErrorBody>(text)
        .map(|e| e.message)
        .unwrap_or_else(|_| text.to_string())
}
