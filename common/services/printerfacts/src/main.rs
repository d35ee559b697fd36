//! The printerfacts binary: read `PORT` and `BIND`, bind, serve forever.
//!
//! systemd starts it (see `common/services/printerfacts.nix`); everything it has to say goes to stderr, one line
//! per event, which the journal records.

use std::net::TcpListener;
use std::process::ExitCode;

use printerfacts::{Config, serve_with};

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            log(&format!("printerfacts: {error}"));
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(config.socket_addr()) {
        Ok(listener) => listener,
        Err(error) => {
            log(&format!("printerfacts: cannot listen on {}: {error}", config.socket_addr()));
            return ExitCode::FAILURE;
        }
    };
    log(&format!("printerfacts: listening on http://{}", config.socket_addr()));
    match serve_with(listener, |event| log(&format!("printerfacts: {event}"))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log(&format!("printerfacts: stopped accepting connections: {error}"));
            ExitCode::FAILURE
        }
    }
}

/// Writes one line to stderr.
#[allow(
    clippy::print_stderr,
    reason = "a service binary's log is its stderr: systemd hands it to the journal; this is the only place that prints"
)]
fn log(line: &str) {
    eprintln!("{line}");
}
