//! Daemon plumbing both daemons share: the ready file (`DATA_DIR/run/<name>.json`) that
//! tells scripts and tests a daemon is up, the shutdown signal, logging, and the clock.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use streamgate_api::ready::ReadyInfo;

/// A ready file, removed again by [`ReadyFile::remove`] on clean exit.
#[derive(Debug)]
pub struct ReadyFile {
    path: PathBuf,
}

impl ReadyFile {
    /// Writes `contents` as JSON to its place under `data_dir/run/`, atomically: readers see
    /// either no file or the whole file.
    pub fn write<I: ReadyInfo>(data_dir: &Path, contents: &I) -> std::io::Result<Self> {
        let path = I::path(data_dir);
        let run_dir = path.parent().unwrap_or(data_dir).to_path_buf();
        std::fs::create_dir_all(&run_dir)?;
        let temp = run_dir.join(format!(".{}.json.tmp", I::NAME));
        let mut file = std::fs::File::create(&temp)?;
        serde_json::to_writer_pretty(&mut file, contents)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)?;
        Ok(Self { path })
    }

    pub fn remove(self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), "could not remove ready file: {e}");
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM.
///
/// Cancel-safe: dropping the future leaves the handlers installed and harmless.
pub async fn shutdown_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    })
}

/// Runs a daemon's async main on a multi-threaded runtime and turns its result into the
/// exit status, printing the error (with its causes) as one line.
pub fn run_main<E: std::fmt::Display>(
    main: impl std::future::Future<Output = Result<(), E>>,
) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(main);
    // Background tasks of the stores may linger; they hold nothing that needs flushing.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logging for both daemons: `RUST_LOG` if set, else `info` for StreamGate and `warn` for
/// the libraries, whose info lines are mostly noise for an operator.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,streamgate_node=info,streamgate_bootstrap=info,streamgate=info",
        )
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Seconds since the Unix epoch: the clock the protocol crate's rules take as input.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
