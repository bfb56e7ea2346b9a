//! `make bench-workers`: the default ladder of a 60 s 1080p30 clip published by one node
//! pinned to one core, and in the same run published through two workers each pinned to a
//! core of its own (the publisher unpinned, as it only splits, verifies and does the
//! audio). Prints both wall times (upload to published), the speed-up, and the CPU the
//! publisher spent verifying the workers' output as a share of the CPU the workers spent
//! transcoding it.

use std::{path::Path, process::Command, time::Instant};

use anyhow::{Context, bail};
use streamgate_tests::{
    Node, bench::make_1080p_source, init_node_dir, jobs, publish, start_bootstrap, start_node,
    test_config, wait_until,
};

const SECONDS: u32 = 60;

fn main() -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        bail!("bench-workers needs two cores (one per worker); this machine has {cores}");
    }
    let root = tempfile::tempdir()?;
    let source = root.path().join("source.mp4");
    print!("bench-workers: ");
    make_1080p_source(&source, SECONDS)?;
    let alone = one_node(root.path(), &source)?;
    println!("one node on core 0: {alone:.1} s");
    let (together, verify_ms, work_ms, by) = with_workers(root.path(), &source)?;
    println!();
    println!("{SECONDS} s 1080p30, default ladder (1080p, 720p, 480p, 360p + AAC + Opus):");
    println!("  one node pinned to one core   {alone:7.1} s");
    println!("  two workers, a core each      {together:7.1} s   (chunks by {by})");
    println!(
        "  speed-up {:.2}x (target 1.6x, ideal 2x)",
        alone / together
    );
    println!(
        "  verification {:.1} s CPU on the publisher against {:.1} s CPU of transcoding on the workers: {:.1}% (target at most 5%)",
        verify_ms as f64 / 1000.0,
        work_ms as f64 / 1000.0,
        100.0 * verify_ms as f64 / work_ms.max(1) as f64
    );
    Ok(())
}

/// Pins every thread of `pid` (and the threads they start) to `core`.
fn pin(pid: u32, core: usize) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &core.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("taskset (util-linux)")?;
    if !status.success() {
        bail!("taskset failed for {pid}");
    }
    Ok(())
}

fn pid(node: &Node) -> anyhow::Result<u32> {
    node.child.as_ref().map(|c| c.id()).context("node process")
}

/// User plus system CPU of process `pid` so far, in milliseconds.
fn cpu_ms(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let after = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(ticks * 1000 / per_sec)
}

fn one_node(root: &Path, source: &Path) -> anyhow::Result<f64> {
    let dir = root.join("alone");
    init_node_dir(&dir, &test_config())?;
    let node = start_node(&dir, &[])?;
    pin(pid(&node)?, 0)?;
    let started = Instant::now();
    publish(&node.info.api_url, source, &[], &root.join("state-alone"))
        .map_err(|e| anyhow::anyhow!("publish alone: {e}"))?;
    Ok(started.elapsed().as_secs_f64())
}

fn with_workers(root: &Path, source: &Path) -> anyhow::Result<(f64, u64, u64, String)> {
    let bootstrap = start_bootstrap(&root.join("bootstrap"))?;
    let entry = vec![bootstrap.info.listen_addrs[0].clone()];
    let dir = root.join("publisher");
    init_node_dir(&dir, &test_config())?;
    let publisher = start_node(&dir, &entry)?;
    let mut workers = Vec::new();
    for core in 0..2 {
        let mut config = test_config();
        config.worker.enabled = true;
        let dir = root.join(format!("worker{core}"));
        init_node_dir(&dir, &config)?;
        let worker = start_node(&dir, &entry)?;
        pin(pid(&worker)?, core)?;
        workers.push(worker);
    }
    let api = publisher.info.api_url.clone();
    let known = wait_until(std::time::Duration::from_secs(60), || {
        streamgate_tests::cli(&api, &["--json", "workers"])
            .stdout
            .iter()
            .filter(|b| **b == b'{')
            .count()
            >= 2
    });
    if !known {
        bail!("the publisher did not hear of both workers");
    }
    let before: u64 = workers
        .iter()
        .map(|w| pid(w).and_then(cpu_ms))
        .sum::<anyhow::Result<u64>>()?;
    let started = Instant::now();
    publish(&api, source, &[], &root.join("state-workers"))
        .map_err(|e| anyhow::anyhow!("publish through workers: {e}"))?;
    let took = started.elapsed().as_secs_f64();
    let after: u64 = workers
        .iter()
        .map(|w| pid(w).and_then(cpu_ms))
        .sum::<anyhow::Result<u64>>()?;
    let jobs = jobs(&api);
    let chunks = jobs[0]["chunks"]
        .as_array()
        .context("the job has no chunks")?;
    let verify_ms = chunks
        .iter()
        .filter_map(|c| c["verify_cpu_ms"].as_u64())
        .sum();
    let mut by: Vec<String> = chunks
        .iter()
        .map(|c| c["worker"].as_str().unwrap_or("?").to_string())
        .collect();
    let names: Vec<String> = workers.iter().map(|w| w.info.peer_id.clone()).collect();
    for name in &mut by {
        if let Some(i) = names.iter().position(|n| n == name) {
            *name = format!("worker{i}");
        }
    }
    Ok((took, verify_ms, after - before, by.join(",")))
}
