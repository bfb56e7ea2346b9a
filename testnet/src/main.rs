//! `streamgate-testnet`: will start a whole local StreamGate network. Not built yet.

fn main() -> std::process::ExitCode {
    eprintln!(
        "streamgate-testnet is not built yet: the one-command local network (chain, contracts, \
         bootstrap, nodes, demo video) is planned work. Today you can start a bootstrap node and \
         nodes by hand; see README.md."
    );
    std::process::ExitCode::from(2)
}
