//! The reference workflow, "Paranoid NixOS on AWS": `cargo run --example printerfacts -- [plan|up|destroy|...]`.
//!
//! With no AWS account and no network, `plan` (the default) prints the whole plan of the three stacks.

use std::process::ExitCode;

#[allow(dead_code, reason = "shared with the snapshot tests, which use every item")]
mod stacks;

fn main() -> ExitCode {
    paranix::cli::run(stacks::project(), paranix::provider::Providers::new())
}
