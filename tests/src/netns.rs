//! Network namespaces a test makes for itself: an "internet" and home networks behind
//! masquerading routers, all on this machine.
//!
//! ```text
//!   ns bootstrap 198.18.0.1 ─┐
//!   ns a         198.18.0.2 ─┤ bridge (ns inet)
//!   ns router-b  198.18.0.3 ─┤        └─ lan 100.64.1.1 ── ns b 100.64.1.2
//!   ns router-c  198.18.0.4 ─┘        └─ lan 100.64.2.1 ── ns c 100.64.2.2
//! ```
//!
//! The ranges are those reserved for testing (198.18.0.0/15) and for carrier-grade NAT
//! (100.64.0.0/10), so nothing here can be mistaken for a real network, and no namespace
//! has a route out of the topology. Every namespace (and with it every interface) is
//! removed when the [`Topology`] drops; processes started in one must be stopped first.
//!
//! A thread enters a namespace with [`Namespace::enter`]; whatever it starts there (a node,
//! the CLI, a socket) lives in that namespace, so the loopback helpers of the harness work
//! unchanged inside it.

use std::{
    fs::File,
    net::Ipv4Addr,
    os::fd::AsRawFd,
    path::Path,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context, bail};

/// How a home router treats packets from the internet that belong to no mapping it made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsolicited {
    /// No firewall rule: the router's kernel answers them itself (a TCP reset, an ICMP
    /// port-unreachable), as a Linux box doing plain masquerading does.
    KernelAnswers,
    /// Dropped without an answer, as most home routers do.
    Dropped,
    /// Refused by a firewall rule with a TCP reset or an ICMP port-unreachable.
    Reset,
}

/// One network namespace of a topology.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub name: String,
    /// Its address in the topology (on the internet, or on its home LAN).
    pub addr: Ipv4Addr,
}

impl Namespace {
    /// Runs `work` on a thread inside this namespace and returns what it returned.
    /// Processes and sockets made there stay in the namespace.
    pub fn enter<T: Send>(&self, work: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        let path = format!("/var/run/netns/{}", self.name);
        let handle = File::open(&path).with_context(|| format!("open {path}"))?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns(2) on a descriptor we hold open; it changes only this
                    // thread's network namespace.
                    #[allow(unsafe_code)]
                    let entered = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
                    if entered != 0 {
                        bail!(
                            "setns into {}: {}",
                            self.name,
                            std::io::Error::last_os_error()
                        );
                    }
                    Ok(work())
                })
                .join()
                .map_err(|_| anyhow::anyhow!("a thread in namespace {} panicked", self.name))?
        })
    }

    /// `ip netns exec NAME program`: a command that runs in this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }
}

/// The topology above, built for one test.
#[derive(Debug)]
pub struct Topology {
    names: Vec<String>,
    pub bootstrap: Namespace,
    /// A node with a public address.
    pub a: Namespace,
    /// Home nodes, each behind its own router.
    pub b: Namespace,
    pub c: Namespace,
    pub router_b: Namespace,
    pub router_c: Namespace,
}

/// Distinguishes the topologies of tests running at once in one process.
static NEXT_TOPOLOGY: AtomicU32 = AtomicU32::new(0);

impl Topology {
    /// Makes the namespaces, links and routers; home routers treat unsolicited packets as
    /// `unsolicited` says. Fails (leaving nothing behind) without root, `ip` or `nft`.
    pub fn build(unsolicited: Unsolicited) -> anyhow::Result<Self> {
        remove_orphans();
        let prefix = format!(
            "sg{}-{}",
            std::process::id(),
            NEXT_TOPOLOGY.fetch_add(1, Ordering::Relaxed)
        );
        let public = |last: u8| Ipv4Addr::new(198, 18, 0, last);
        let ns = |role: &str, addr: Ipv4Addr| Namespace {
            name: format!("{prefix}-{role}"),
            addr,
        };
        let mut topology = Topology {
            names: Vec::new(),
            bootstrap: ns("bootstrap", public(1)),
            a: ns("a", public(2)),
            router_b: ns("router-b", public(3)),
            router_c: ns("router-c", public(4)),
            b: ns("b", Ipv4Addr::new(100, 64, 1, 2)),
            c: ns("c", Ipv4Addr::new(100, 64, 2, 2)),
        };
        let inet = format!("{prefix}-inet");
        for name in [
            &inet,
            &topology.bootstrap.name,
            &topology.a.name,
            &topology.router_b.name,
            &topology.router_c.name,
            &topology.b.name,
            &topology.c.name,
        ] {
            ip(&["netns", "add", name])?;
            // Registered at once, so a later failure still removes it.
            topology.names.push(name.clone());
            ip(&["-n", name, "link", "set", "lo", "up"])?;
        }
        ip(&["-n", &inet, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &inet, "link", "set", "br0", "up"])?;
        for (index, host) in [
            &topology.bootstrap,
            &topology.a,
            &topology.router_b,
            &topology.router_c,
        ]
        .into_iter()
        .enumerate()
        {
            let port = format!("p{index}");
            link(&host.name, "wan", &inet, &port)?;
            ip(&["-n", &inet, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &inet, "link", "set", &port, "up"])?;
            address(&host.name, "wan", host.addr, 24)?;
        }
        for (router, home) in [
            (&topology.router_b, &topology.b),
            (&topology.router_c, &topology.c),
        ] {
            let [a, b, c, _] = home.addr.octets();
            let gateway = Ipv4Addr::new(a, b, c, 1);
            link(&router.name, "lan", &home.name, "eth0")?;
            address(&router.name, "lan", gateway, 24)?;
            address(&home.name, "eth0", home.addr, 24)?;
            ip(&[
                "-n",
                &home.name,
                "route",
                "add",
                "default",
                "via",
                &gateway.to_string(),
            ])?;
            run(router
                .command("sysctl")
                .args(["-qw", "net.ipv4.ip_forward=1"]))?;
            nft(router, &router_rules(unsolicited))?;
        }
        Ok(topology)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for name in self.names.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Removes the namespaces of test processes that died without cleaning up (killed), so
/// that they do not pile up across runs.
fn remove_orphans() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("sg")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

/// A home router's nftables rules: masquerade what leaves through `wan`, forward only
/// what belongs to a connection the LAN started, and handle the rest as `unsolicited` says.
fn router_rules(unsolicited: Unsolicited) -> String {
    let refuse = match unsolicited {
        Unsolicited::KernelAnswers => "",
        Unsolicited::Dropped => "iifname \"wan\" drop",
        Unsolicited::Reset => {
            "iifname \"wan\" meta l4proto tcp reject with tcp reset\n\
             iifname \"wan\" reject with icmp type port-unreachable"
        }
    };
    format!(
        "table ip nat {{
  chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;
    oifname \"wan\" masquerade
  }}
}}
table ip filter {{
  chain forward {{ type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname \"lan\" oifname \"wan\" accept
  }}
  chain input {{ type filter hook input priority filter; policy accept;
    iifname \"wan\" ct state established,related accept
    {refuse}
  }}
}}
"
    )
}

/// A veth pair with one end in each namespace.
fn link(ns: &str, name: &str, peer_ns: &str, peer: &str) -> anyhow::Result<()> {
    ip(&[
        "-n", ns, "link", "add", name, "type", "veth", "peer", "name", peer, "netns", peer_ns,
    ])?;
    ip(&["-n", ns, "link", "set", name, "up"])?;
    ip(&["-n", peer_ns, "link", "set", peer, "up"])
}

fn address(ns: &str, dev: &str, addr: Ipv4Addr, prefix: u8) -> anyhow::Result<()> {
    ip(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("{addr}/{prefix}"),
        "dev",
        dev,
    ])
}

fn nft(ns: &Namespace, rules: &str) -> anyhow::Result<()> {
    let path = std::env::temp_dir().join(format!("{}.nft", ns.name));
    std::fs::write(&path, rules)?;
    let result = run(ns.command("nft").arg("-f").arg(&path));
    let _ = std::fs::remove_file(&path);
    result
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("ip").args(args))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?} (is iproute2/nftables installed?)"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
