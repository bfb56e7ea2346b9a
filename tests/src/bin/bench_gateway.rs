//! `make bench-gateway`: hot-segment serving. `wrk` requests one media segment of a
//! published video from a StreamGate node's gateway, and in the same run the same bytes
//! from nginx (sendfile, access log off). Prints requests/s and MB/s for both and the ratio,
//! then the same again while 2,000 idle connections are held open against each server (a
//! closed one is opened again at once; each server keeps its own timeouts: the node's
//! defaults, nginx's defaults).

use std::{
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context, bail};
use streamgate_tests::{cli, init_node_dir, media::make_clip, start_node, test_config, wait_until};

const ROUNDS: usize = 2;
const WRK_ARGS: [&str; 4] = ["-t2", "-c32", "-d10s", "--latency"];
const IDLE_CONNECTIONS: usize = 2000;

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    streamgate_tests::raise_descriptor_limit();
    let root = tempfile::tempdir()?;
    let dir = root.path().join("node");
    init_node_dir(&dir, &test_config())?;
    let node = start_node(&dir, &[])?;
    let clip = root.path().join("clip.mp4");
    make_clip(&clip, 12, "1280x720", 30, true)?;
    let published = streamgate_tests::publish(
        &node.info.api_url,
        &clip,
        &["--ladder", "720p"],
        &root.path().join("state"),
    )
    .map_err(|e| anyhow::anyhow!("publish failed: {e}"))?;
    let id = published.manifest_id;
    let ours = format!("{}/hls/{id}/720p/seg_1.m4s", node.info.api_url);

    // The same bytes for nginx.
    let www = root.path().join("www");
    std::fs::create_dir_all(&www)?;
    let segment = fetch(&ours)?;
    std::fs::write(www.join("seg_1.m4s"), &segment)?;
    let port = free_port()?;
    let _nginx = Nginx::start(root.path(), port)?;
    let theirs = format!("http://127.0.0.1:{port}/seg_1.m4s");
    if fetch(&theirs)? != segment {
        bail!("nginx does not serve the same bytes");
    }
    let _ = cli(&node.info.api_url, &["status"]);

    println!(
        "bench-gateway: {} byte segment, wrk {}",
        segment.len(),
        WRK_ARGS.join(" ")
    );
    let plain = rounds(&ours, &theirs, None)?;
    let ours_addr: SocketAddr = node.info.api_url.trim_start_matches("http://").parse()?;
    let theirs_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let idle = rounds(&ours, &theirs, Some((ours_addr, theirs_addr)))?;
    println!();
    println!("hot segment (best of {ROUNDS}):");
    plain.print("");
    idle.print(&format!(
        "with {IDLE_CONNECTIONS} idle connections held open: "
    ));
    drop(node);
    Ok(())
}

/// The best figures of both servers over [`ROUNDS`] rounds.
struct Best {
    ours: (f64, f64),
    theirs: (f64, f64),
}

impl Best {
    fn print(&self, label: &str) {
        let ((or, om), (tr, tm)) = (self.ours, self.theirs);
        println!(
            "  {label}streamgate {or:8.0} req/s {om:7.1} MB/s   nginx {tr:8.0} req/s {tm:7.1} MB/s   ratio {:.2}",
            or / tr
        );
    }
}

/// wrk against both servers in turn; with `idle`, while [`IDLE_CONNECTIONS`] idle
/// connections are held open against the server being measured.
fn rounds(
    ours: &str,
    theirs: &str,
    idle: Option<(SocketAddr, SocketAddr)>,
) -> anyhow::Result<Best> {
    let mut results = Vec::new();
    for round in 0..ROUNDS {
        let measure = |url: &str, addr: Option<SocketAddr>| -> anyhow::Result<(Wrk, u64)> {
            let holder = addr
                .map(|a| IdleHolder::start(a, IDLE_CONNECTIONS))
                .transpose()?;
            let result = wrk(url)?;
            let reopened = holder.map_or(0, IdleHolder::stop);
            Ok((result, reopened))
        };
        let (o, o_reopened) = measure(ours, idle.map(|i| i.0))?;
        let (t, t_reopened) = measure(theirs, idle.map(|i| i.1))?;
        let idle_note = if idle.is_some() {
            format!(
                " (idle connections closed by the server and reopened: streamgate {o_reopened}, nginx {t_reopened})"
            )
        } else {
            String::new()
        };
        println!(
            "round {round}{}: streamgate {:.0} req/s {:.1} MB/s p99 {}   nginx {:.0} req/s {:.1} MB/s p99 {}{idle_note}",
            if idle.is_some() { " idle" } else { "" },
            o.requests,
            o.megabytes,
            o.p99,
            t.requests,
            t.megabytes,
            t.p99
        );
        results.push((o, t));
    }
    let best = |f: fn(&(Wrk, Wrk)) -> f64| results.iter().map(f).fold(0.0, f64::max);
    Ok(Best {
        ours: (best(|r| r.0.requests), best(|r| r.0.megabytes)),
        theirs: (best(|r| r.1.requests), best(|r| r.1.megabytes)),
    })
}

/// Holds idle connections open against a server, opening a new one for each it closes.
struct IdleHolder {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl IdleHolder {
    fn start(addr: SocketAddr, count: usize) -> anyhow::Result<Self> {
        let open = move || -> std::io::Result<TcpStream> {
            let stream = TcpStream::connect(addr)?;
            stream.set_nonblocking(true)?;
            Ok(stream)
        };
        let mut streams = (0..count).map(|_| open()).collect::<Result<Vec<_>, _>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut reopened = 0;
            let mut byte = [0u8; 1];
            while !stopping.load(Ordering::Relaxed) {
                for stream in &mut streams {
                    let closed = match stream.read(&mut byte) {
                        Ok(_) => true,
                        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                    };
                    if closed && let Ok(fresh) = open() {
                        *stream = fresh;
                        reopened += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            reopened
        });
        Ok(Self { stop, thread })
    }

    /// Closes every connection; returns how many the server closed and were reopened.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

fn fetch(url: &str) -> anyhow::Result<Vec<u8>> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let response = streamgate_tests::http_client().get(url).send().await?;
        if !response.status().is_success() {
            bail!("{url}: HTTP {}", response.status());
        }
        Ok(response.bytes().await?.to_vec())
    })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[derive(Debug)]
struct Wrk {
    requests: f64,
    megabytes: f64,
    p99: String,
}

fn wrk(url: &str) -> anyhow::Result<Wrk> {
    let out = Command::new("wrk")
        .args(WRK_ARGS)
        .arg(url)
        .output()
        .context("run wrk (scripts/setup.sh installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || text.contains("Non-2xx") {
        bail!("wrk against {url} failed or saw errors:\n{text}");
    }
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_string()))
    };
    let requests: f64 = field("Requests/sec:").context("no Requests/sec")?.parse()?;
    let transfer = field("Transfer/sec:").context("no Transfer/sec")?;
    let megabytes = parse_size(&transfer)? / 1e6;
    let p99 = field("99%").unwrap_or_default();
    Ok(Wrk {
        requests,
        megabytes,
        p99,
    })
}

/// wrk prints e.g. `1.23GB` or `456.78MB`.
fn parse_size(text: &str) -> anyhow::Result<f64> {
    let (number, unit) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let n: f64 = number.parse()?;
    Ok(n * match unit {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        other => bail!("unknown unit {other}"),
    })
}

struct Nginx(Child);

impl Nginx {
    fn start(root: &Path, port: u16) -> anyhow::Result<Self> {
        let conf = root.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nworker_processes 2;\nuser root;\npid {root}/nginx.pid;\nerror_log {root}/nginx-error.log;\n\
                 events {{ worker_connections 4096; }}\n\
                 http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n\
                 types {{ video/mp4 m4s; }}\n\
                 server {{\n    listen 127.0.0.1:{port};\n    root {root}/www;\n\
                 location / {{ add_header Cache-Control \"public, max-age=31536000, immutable\"; }}\n  }}\n}}\n",
                root = root.display()
            ),
        )?;
        let child = Command::new("nginx")
            .args(["-c"])
            .arg(&conf)
            .args(["-p"])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start nginx (scripts/setup.sh installs it)")?;
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if !up {
            bail!(
                "nginx did not start: {}",
                std::fs::read_to_string(root.join("nginx-error.log")).unwrap_or_default()
            );
        }
        Ok(Self(child))
    }
}

impl Drop for Nginx {
    /// SIGTERM to the master, which stops its workers; SIGKILL would orphan them.
    fn drop(&mut self) {
        streamgate_tests::signal(self.0.id(), libc::SIGTERM);
        let exited = wait_until(Duration::from_secs(5), || {
            self.0.try_wait().ok().flatten().is_some()
        });
        if !exited {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}
