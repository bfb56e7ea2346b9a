//! `make bench-transfer`: StreamGate node-to-node transfer against bare iroh-blobs, in the
//! same run on the same machine.
//!
//! 1. Throughput: a 256 MiB blob added on node A is fetched by a fresh node B (separate
//!    processes, found through the DHT, verified into B's store: `HEAD /blob/<hash>` returns
//!    once B holds it durably). Baseline: the same bytes between two bare iroh-blobs
//!    endpoints (fs store to fs store, no relays, portmapper off), in this process.
//! 2. Dial to first verified byte of a 2 MiB blob: a fresh node C asks for a blob it has
//!    never seen; timed until the first body byte of `GET /blob/<hash>`. Baseline: a fresh
//!    bare endpoint dials the provider and receives the first verified leaf.
//!
//! Prints MiB/s (median of 3) and milliseconds (median of 5) for both, and the ratios.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context;
use futures::StreamExt;
use iroh::{Endpoint, RelayMode, endpoint::presets};
use iroh_blobs::{BlobsProtocol, store::fs::FsStore};
use streamgate_tests::{
    Node, cli, init_node_dir, start_bootstrap, start_node, test_bytes, test_config,
};

const BIG: usize = 256 * 1024 * 1024;
const SMALL: usize = 2 * 1024 * 1024;
const RUNS: usize = 3;
const DIAL_RUNS: usize = 5;

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new()?;
    let root = tempfile::tempdir()?;
    let big_file = root.path().join("big.bin");
    std::fs::write(&big_file, test_bytes(BIG, 100))?;

    println!(
        "bench-transfer: {} MiB blob, {RUNS} runs each; 2 MiB dial test, {DIAL_RUNS} runs each",
        BIG >> 20
    );

    // StreamGate.
    let bootstrap = start_bootstrap(&root.path().join("bootstrap"))?;
    let entry = vec![bootstrap.info.listen_addrs[0].clone()];
    let a_dir = root.path().join("a");
    init_node_dir(&a_dir, &test_config())?;
    let a = start_node(&a_dir, &entry)?;
    let hash = add(&a, &big_file)?;
    let client = streamgate_tests::http_client();
    let mut ours = Vec::new();
    for run in 0..RUNS {
        let b_dir = root.path().join(format!("b{run}"));
        init_node_dir(&b_dir, &test_config())?;
        let b = start_node(&b_dir, &entry)?;
        let started = Instant::now();
        let status = runtime
            .block_on(
                client
                    .head(format!("{}/blob/{hash}", b.info.api_url))
                    .send(),
            )?
            .status();
        let took = started.elapsed();
        anyhow::ensure!(
            status.is_success(),
            "fetch on B failed: {status}\n{}",
            b.log()
        );
        ours.push(mib_per_sec(BIG, took));
    }

    // Bare iroh-blobs.
    let mut bare = Vec::new();
    runtime.block_on(async {
        let provider = BareProvider::start(&root.path().join("bare-a"), &big_file).await?;
        for run in 0..RUNS {
            let (store, endpoint) =
                bare_endpoint(&root.path().join(format!("bare-b{run}"))).await?;
            let started = Instant::now();
            let conn = endpoint
                .connect(provider.addr.clone(), iroh_blobs::ALPN)
                .await?;
            store.remote().fetch(conn, provider.hash).await?;
            store.sync_db().await?;
            bare.push(mib_per_sec(BIG, started.elapsed()));
            endpoint.close().await;
            store.shutdown().await?;
        }
        provider.shutdown().await;
        anyhow::Ok(())
    })?;

    // Dial to first verified byte, 2 MiB.
    let mut ours_dial = Vec::new();
    for run in 0..DIAL_RUNS {
        let file = root.path().join(format!("small{run}.bin"));
        std::fs::write(&file, test_bytes(SMALL, 200 + run as u64))?;
        let small_hash = add(&a, &file)?;
        let c_dir = root.path().join(format!("c{run}"));
        init_node_dir(&c_dir, &test_config())?;
        let c = start_node(&c_dir, &entry)?;
        let url = format!("{}/blob/{small_hash}", c.info.api_url);
        let took = runtime.block_on(async {
            let started = Instant::now();
            let response = client.get(&url).send().await?;
            let mut body = response.bytes_stream();
            let first = body.next().await.context("empty body")??;
            anyhow::ensure!(!first.is_empty());
            anyhow::Ok(started.elapsed())
        })?;
        ours_dial.push(took.as_secs_f64() * 1000.0);
    }
    let mut bare_dial = Vec::new();
    runtime.block_on(async {
        let file = root.path().join("small-bare.bin");
        std::fs::write(&file, test_bytes(SMALL, 300))?;
        let provider = BareProvider::start(&root.path().join("bare-small"), &file).await?;
        for run in 0..DIAL_RUNS {
            let (store, endpoint) =
                bare_endpoint(&root.path().join(format!("bare-c{run}"))).await?;
            let started = Instant::now();
            let conn = endpoint
                .connect(provider.addr.clone(), iroh_blobs::ALPN)
                .await?;
            let mut items = iroh_blobs::get::request::get_blob(conn, provider.hash);
            loop {
                match items.next().await.context("stream ended")? {
                    iroh_blobs::get::request::GetBlobItem::Item(
                        bao_tree::io::BaoContentItem::Leaf(_),
                    ) => break,
                    iroh_blobs::get::request::GetBlobItem::Error(e) => anyhow::bail!("{e}"),
                    _ => {}
                }
            }
            bare_dial.push(started.elapsed().as_secs_f64() * 1000.0);
            endpoint.close().await;
            store.shutdown().await?;
        }
        provider.shutdown().await;
        anyhow::Ok(())
    })?;

    let (ours_mib, bare_mib) = (median(&mut ours), median(&mut bare));
    let (ours_ms, bare_ms) = (median(&mut ours_dial), median(&mut bare_dial));
    println!();
    println!(
        "256 MiB transfer (median MiB/s)    streamgate {ours_mib:8.1}   bare iroh-blobs {bare_mib:8.1}   ratio {:.2}",
        ours_mib / bare_mib
    );
    println!("  all runs: streamgate {ours:.1?}  bare {bare:.1?}");
    println!(
        "2 MiB dial to first byte (median ms) streamgate {ours_ms:7.1}   bare iroh-blobs {bare_ms:8.1}   ratio {:.2}",
        ours_ms / bare_ms
    );
    println!("  all runs: streamgate {ours_dial:.1?}  bare {bare_dial:.1?}");
    println!(
        "(streamgate's dial figure includes the DHT lookup of providers and node records, and the whole 2 MiB"
    );
    println!(
        " being verified into the store before the gateway answers; the bare figure is one verified 16 KiB leaf)"
    );
    Ok(())
}

fn add(node: &Node, file: &Path) -> anyhow::Result<String> {
    let out = cli(
        &node.info.api_url,
        &["add", file.to_str().context("utf-8 path")?],
    );
    anyhow::ensure!(
        out.status.success(),
        "add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

fn mib_per_sec(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / took.as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

async fn bare_endpoint(dir: &Path) -> anyhow::Result<(FsStore, Endpoint)> {
    let store = FsStore::load(dir).await?;
    let endpoint = Endpoint::builder(presets::Minimal)
        .relay_mode(RelayMode::Disabled)
        .portmapper_config(iroh::endpoint::PortmapperConfig::Disabled)
        .clear_ip_transports()
        .bind_addr("127.0.0.1:0")?
        .bind()
        .await?;
    Ok((store, endpoint))
}

struct BareProvider {
    store: FsStore,
    router: iroh::protocol::Router,
    addr: iroh::EndpointAddr,
    hash: iroh_blobs::Hash,
}

impl BareProvider {
    async fn start(dir: &Path, file: &Path) -> anyhow::Result<Self> {
        let (store, endpoint) = bare_endpoint(dir).await?;
        let hash = store.add_path(file).await?.hash;
        store.sync_db().await?;
        let router = iroh::protocol::Router::builder(endpoint.clone())
            .accept(iroh_blobs::ALPN, BlobsProtocol::new(&store, None))
            .spawn();
        Ok(Self {
            addr: endpoint.addr(),
            store,
            router,
            hash,
        })
    }

    async fn shutdown(self) {
        let _ = self.router.shutdown().await;
        let _ = self.store.shutdown().await;
    }
}
