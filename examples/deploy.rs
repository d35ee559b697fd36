//! Deploying a NixOS system to a machine you already have, no AWS involved (what deploy-rs and colmena do):
//!
//! ```text
//! DEPLOY_HOST=203.0.113.7 DEPLOY_HOST_KEY="ssh-ed25519 AAAA..." DEPLOY_TOPLEVEL=/nix/store/...-nixos-system-web \
//! DEPLOY_SSH_KEY="$(cat ~/.ssh/deploy_ed25519)" PARANIX_STATE_PASSPHRASE=... \
//!     cargo run --example deploy -- up
//! ```
//!
//! The private key comes from the environment and is a sensitive value: it never appears in plans, events,
//! errors or logs, and with `PARANIX_STATE_PASSPHRASE` set it is encrypted in the state file. Optional:
//! `DEPLOY_PORT` (22), `DEPLOY_USER` (root), `DEPLOY_HEALTH_URL_PATH` with `DEPLOY_HEALTH_PORT` (an HTTP
//! check), `DEPLOY_HEALTH_SECS` (how long the check may fail), `DEPLOY_CONFIRM_SECS` (how long the host waits
//! for the confirmation before rolling back), `DEPLOY_CONNECT_SECS` (the SSH connect timeout).

#![allow(clippy::print_stderr, reason = "an example program talks to its user")]

use std::process::ExitCode;
use std::time::Duration;

use paranix::nixos::{Deployment, HealthCheck};
use paranix::prelude::*;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A numeric variable: absent is `None`; present but not a number is an error naming it (a typo must not
/// silently deploy to port 22 or drop a health check).
fn number<T: std::str::FromStr>(name: &str) -> Result<Option<T>, String> {
    var(name).map(|v| v.parse().map_err(|_| format!("{name}={v:?} is not a number"))).transpose()
}

fn main() -> ExitCode {
    let (Some(host), Some(host_key), Some(toplevel)) =
        (var("DEPLOY_HOST"), var("DEPLOY_HOST_KEY"), var("DEPLOY_TOPLEVEL"))
    else {
        eprintln!("error: set DEPLOY_HOST, DEPLOY_HOST_KEY and DEPLOY_TOPLEVEL (see the example's documentation)");
        return ExitCode::from(2);
    };
    let numbers = (|| {
        Ok::<_, String>((
            number::<i64>("DEPLOY_PORT")?,
            number::<u64>("DEPLOY_CONFIRM_SECS")?,
            number::<u64>("DEPLOY_HEALTH_SECS")?,
            number::<u64>("DEPLOY_CONNECT_SECS")?,
            number::<u16>("DEPLOY_HEALTH_PORT")?,
        ))
    })();
    let (port, confirm, health, connect, health_port) = match numbers {
        Ok(numbers) => numbers,
        Err(why) => {
            eprintln!("error: {why}");
            return ExitCode::from(2);
        }
    };
    let mut deployment = Deployment::new("host")
        .host(host.as_str())
        .port(port.unwrap_or(22))
        .user(var("DEPLOY_USER").unwrap_or_else(|| "root".into()))
        .host_key(PublicKey::new(host_key))
        .toplevel(StorePath::new(toplevel));
    if let Some(key) = var("DEPLOY_SSH_KEY") {
        deployment = deployment.private_key(key);
    }
    if let Some(secs) = confirm {
        deployment = deployment.confirm_within(Duration::from_secs(secs));
    }
    if let Some(secs) = health {
        deployment = deployment.health_deadline(Duration::from_secs(secs));
    }
    if let Some(secs) = connect {
        deployment = deployment.connect_timeout(Duration::from_secs(secs));
    }
    match (var("DEPLOY_HEALTH_URL_PATH"), health_port) {
        (Some(path), Some(port)) => deployment = deployment.health_check(HealthCheck::http(port, path)),
        (None, None) => {}
        _ => {
            eprintln!("error: set both DEPLOY_HEALTH_URL_PATH and DEPLOY_HEALTH_PORT for an HTTP health check");
            return ExitCode::from(2);
        }
    }
    let mut stack = Stack::new("deploy");
    stack.add(deployment);
    paranix::cli::run(Project::new().stack(stack))
}
