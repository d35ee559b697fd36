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

fn main() -> ExitCode {
    let (Some(host), Some(host_key), Some(toplevel)) =
        (var("DEPLOY_HOST"), var("DEPLOY_HOST_KEY"), var("DEPLOY_TOPLEVEL"))
    else {
        eprintln!("error: set DEPLOY_HOST, DEPLOY_HOST_KEY and DEPLOY_TOPLEVEL (see the example's documentation)");
        return ExitCode::from(2);
    };
    let port = var("DEPLOY_PORT").and_then(|p| p.parse().ok()).unwrap_or(22);
    let mut deployment = Deployment::new("host")
        .host(host.as_str())
        .port(port)
        .user(var("DEPLOY_USER").unwrap_or_else(|| "root".into()))
        .host_key(PublicKey::new(host_key))
        .toplevel(StorePath::new(toplevel));
    if let Some(key) = var("DEPLOY_SSH_KEY") {
        deployment = deployment.private_key(key);
    }
    if let Some(secs) = var("DEPLOY_CONFIRM_SECS").and_then(|s| s.parse().ok()) {
        deployment = deployment.confirm_within(Duration::from_secs(secs));
    }
    if let Some(secs) = var("DEPLOY_HEALTH_SECS").and_then(|s| s.parse().ok()) {
        deployment = deployment.health_deadline(Duration::from_secs(secs));
    }
    if let Some(secs) = var("DEPLOY_CONNECT_SECS").and_then(|s| s.parse().ok()) {
        deployment = deployment.connect_timeout(Duration::from_secs(secs));
    }
    if let (Some(path), Some(port)) =
        (var("DEPLOY_HEALTH_URL_PATH"), var("DEPLOY_HEALTH_PORT").and_then(|p| p.parse().ok()))
    {
        deployment = deployment.health_check(HealthCheck::http(port, path));
    }
    let mut stack = Stack::new("deploy");
    stack.add(deployment);
    paranix::cli::run(Project::new().stack(stack))
}
