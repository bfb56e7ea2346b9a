//! `make bench-nat`: what each data-plane path costs, in the NAT topology of the tests
//! (`home_network`: bootstrap and A public, B and C behind masquerading routers), beside
//! plain loopback in the same run.
//!
//! Each run, the providing node adds a fresh 64 MiB blob and the fetching node, which has
//! never seen it, is asked for it over HTTP (`GET /blob/<hash>`, with curl inside the
//! fetcher's namespace): time to first byte (the DHT lookup, the provider's record, the
//! connection and the first verified bytes) and throughput over the whole body. The bytes
//! are compared with what was added. The path shown is what the fetcher's status says was
//! selected at the end, not what the case intends; the share of the bytes that crossed the
//! bootstrap's link is measured from its interface counters.
//!
//! - loopback: two nodes on 127.0.0.1 (the baseline);
//! - direct: B (home) fetches from A (public);
//! - hole-punched: C fetches from B, home routers that drop unsolicited packets;
//! - relayed: C fetches from B, routers whose kernel answers unsolicited packets (hole
//!   punching fails), through the bootstrap's relay at its default per-node rate
//!   (`--relay-rate`, 8 MiB/s) and with no rate limit.
//!
//! Needs root, iproute2, nftables and curl (`scripts/setup.sh` installs them).

use std::{path::Path, process::Command};

use anyhow::{Context, bail};
use streamgate_tests::{
    bench::median,
    home_network::{Home, Network, start, start_with},
    init_node_dir,
    netns::{Namespace, Unsolicited},
    start_bootstrap, start_node, test_bytes, test_config,
};

const BLOB: usize = 64 * 1024 * 1024;
const RUNS: usize = 3;

/// The figures of one case.
struct Case {
    name: &'static str,
    paths: Vec<String>,
    ttfb_ms: Vec<f64>,
    mib_s: Vec<f64>,
    /// Bytes the bootstrap received during the fetches: the relay's share of them.
    through_bootstrap: u64,
}

impl Case {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            paths: Vec::new(),
            ttfb_ms: Vec::new(),
            mib_s: Vec::new(),
            through_bootstrap: 0,
        }
    }

    fn record(&mut self, timing: Timing, path: String) {
        self.ttfb_ms.push(timing.first_byte_s * 1000.0);
        self.mib_s
            .push(BLOB as f64 / (1024.0 * 1024.0) / timing.total_s);
        if !self.paths.contains(&path) {
            self.paths.push(path);
        }
    }
}

struct Timing {
    first_byte_s: f64,
    total_s: f64,
}

fn main() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    println!(
        "bench-nat: a fresh {} MiB blob per run, {RUNS} runs per path, fetched over HTTP from a node that does not hold it",
        BLOB >> 20
    );
    let mut cases = vec![loopback(root.path())?];

    let net = start(Unsolicited::KernelAnswers);
    cases.push(across(
        &net,
        root.path(),
        "direct (home B from public A)",
        &net.b,
        &net.a,
    )?);
    cases.push(across(
        &net,
        root.path(),
        "relayed, 8 MiB/s per node (C from B)",
        &net.c,
        &net.b,
    )?);
    drop(net);
    let net = start(Unsolicited::Dropped);
    cases.push(across(
        &net,
        root.path(),
        "hole-punched (C from B)",
        &net.c,
        &net.b,
    )?);
    drop(net);
    let net = start_with(
        Unsolicited::KernelAnswers,
        &Default::default(),
        &["--relay-rate", "0"],
    );
    cases.push(across(
        &net,
        root.path(),
        "relayed, no rate limit (C from B)",
        &net.c,
        &net.b,
    )?);
    drop(net);

    let baseline = median(&mut cases[0].mib_s.clone());
    let baseline_ttfb = median(&mut cases[0].ttfb_ms.clone());
    println!(
        "  {:<38} {:<36} {:>20} {:>7} {:>12} {:>14}",
        "case",
        "selected path, at the end",
        "first byte ms (max)",
        "MiB/s",
        "vs loopback",
        "via bootstrap"
    );
    for case in &mut cases {
        let slowest = case.ttfb_ms.iter().copied().fold(0.0, f64::max);
        let ttfb = median(&mut case.ttfb_ms);
        let rate = median(&mut case.mib_s);
        println!(
            "  {:<38} {:<36} {:>11.1} ({:>6.1}) {:>7.1} {:>5.2}x {:>4.1}x {:>13.0}%",
            case.name,
            case.paths.join(", "),
            ttfb,
            slowest,
            rate,
            rate / baseline,
            ttfb / baseline_ttfb,
            100.0 * case.through_bootstrap as f64 / (RUNS * BLOB) as f64
        );
    }
    println!(
        "  vs loopback: throughput ratio, first-byte time ratio. via bootstrap: bytes the bootstrap's namespace received during the fetches, as a share of the {RUNS} x {} MiB fetched (the relay's share: iroh may carry one connection on the relay and a punched path at once, so the selected path alone does not say where the bytes went)",
        BLOB >> 20
    );
    Ok(())
}

/// Two nodes and a bootstrap on loopback, outside any namespace.
fn loopback(root: &Path) -> anyhow::Result<Case> {
    let bootstrap = start_bootstrap(&root.join("lo-bootstrap"))?;
    let entry = vec![bootstrap.info.listen_addrs[0].clone()];
    let start = |name: &str| {
        let dir = root.join(name);
        init_node_dir(&dir, &test_config())?;
        start_node(&dir, &entry)
    };
    let (provider, fetcher) = (start("lo-provider")?, start("lo-fetcher")?);
    let mut case = Case::new("loopback (baseline)");
    for run in 0..RUNS {
        let bytes = test_bytes(BLOB, 1000 + run as u64);
        let file = root.join("lo-blob");
        std::fs::write(&file, &bytes)?;
        let hash = streamgate_tests::add_file(&provider.info.api_url, &file);
        let out = root.join("lo-got");
        let timing = timed_get(None, &fetcher.info.api_url, &hash, &out, &bytes)?;
        case.record(timing, "direct".into());
    }
    Ok(case)
}

/// Bytes the bootstrap's namespace has received on its link: what its relays carried,
/// besides a little control traffic.
fn bootstrap_rx_bytes(net: &Network) -> anyhow::Result<u64> {
    let out = net
        .topology
        .bootstrap
        .command("cat")
        .arg("/sys/class/net/wan/statistics/rx_bytes")
        .output()?;
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

/// `fetcher` gets fresh blobs only `provider` holds.
fn across(
    net: &Network,
    root: &Path,
    name: &'static str,
    fetcher: &Home,
    provider: &Home,
) -> anyhow::Result<Case> {
    let mut case = Case::new(name);
    for run in 0..RUNS {
        let (hash, bytes) = provider.add_bytes(root, 2000 + run as u64, BLOB);
        let out = root.join("got");
        let before = bootstrap_rx_bytes(net)?;
        let timing = timed_get(
            Some(&fetcher.ns),
            &fetcher.node.info.api_url,
            &hash,
            &out,
            &bytes,
        )
        .with_context(|| format!("{name}, run {run}\nfetcher's log:\n{}", fetcher.node.log()))?;
        case.through_bootstrap += bootstrap_rx_bytes(net)? - before;
        let path = fetcher.path_to(provider);
        case.record(
            timing,
            format!("{} via {}", path.path.as_str(), path.remote_addr),
        );
    }
    Ok(case)
}

/// `GET /blob/<hash>` with curl (in `ns`, when given); the body must be `expected`.
fn timed_get(
    ns: Option<&Namespace>,
    api_url: &str,
    hash: &str,
    out: &Path,
    expected: &[u8],
) -> anyhow::Result<Timing> {
    let mut curl = match ns {
        Some(ns) => ns.command("curl"),
        None => Command::new("curl"),
    };
    let result = curl
        .args(["-sS", "--fail", "-o"])
        .arg(out)
        .args(["-w", "%{time_starttransfer} %{time_total}"])
        .arg(format!("{api_url}/blob/{hash}"))
        .output()
        .context("run curl (scripts/setup.sh installs it)")?;
    if !result.status.success() {
        bail!("curl: {}", String::from_utf8_lossy(&result.stderr));
    }
    let written = String::from_utf8(result.stdout)?;
    let mut times = written.split_whitespace().map(str::parse::<f64>);
    let (Some(Ok(first_byte_s)), Some(Ok(total_s))) = (times.next(), times.next()) else {
        bail!("curl wrote no timings: {written:?}");
    };
    if std::fs::read(out)? != expected {
        bail!("the fetched bytes of {hash} differ from what was added");
    }
    std::fs::remove_file(out)?;
    Ok(Timing {
        first_byte_s,
        total_s,
    })
}
