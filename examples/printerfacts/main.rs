//! The reference workflow, "Paranoid NixOS on AWS": `cargo run --example printerfacts -- [plan|up|destroy|...]`.
//!
//! With no AWS account and no network, `plan` (the default) prints the whole plan of the three stacks. With
//! `--sandbox` everything runs against a local AWS emulator. The disk image is built by Nix, or taken from
//! `PRINTERFACTS_IMAGE=<file>`; in the sandbox without one, a small placeholder disk stands in for it (moto
//! boots nothing, and building the NixOS image needs nixpkgs). In the sandbox, or with `PRINTERFACTS_NO_DEPLOY` set,
//! the host is declared without its NixOS system and deployment: an emulator has no machine to deploy to.

#![allow(clippy::print_stderr, reason = "an example program talks to its user")]

use std::path::PathBuf;
use std::process::ExitCode;

#[allow(dead_code, reason = "shared with the snapshot tests, which use every item")]
mod stacks;

use stacks::ImageSource;

fn main() -> ExitCode {
    let sandbox = std::env::args().any(|a| a == "--sandbox");
    let source = match std::env::var_os("PRINTERFACTS_IMAGE") {
        Some(path) => ImageSource::File(PathBuf::from(path)),
        None if sandbox => match placeholder_image() {
            Ok(path) => {
                eprintln!(
                    "[sandbox] no NixOS image (PRINTERFACTS_IMAGE is unset); a placeholder disk stands in: {}",
                    path.display()
                );
                ImageSource::File(path)
            }
            Err(e) => {
                eprintln!("error: cannot write the sandbox placeholder disk: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => ImageSource::Nix,
    };
    if sandbox || std::env::var_os("PRINTERFACTS_NO_DEPLOY").is_some() {
        // moto boots nothing, so there is no machine to deploy NixOS to: the sandbox declares the host's
        // instance only. (tests/it/host.rs deploys the same stacks to a local SSH target instead.)
        eprintln!(
            "{}the host's NixOS system and deployment are left out (instances only)",
            if sandbox { "[sandbox] the emulator boots no machines: " } else { "PRINTERFACTS_NO_DEPLOY: " }
        );
        return paranix::cli::run(stacks::project_infrastructure(&source, "t3.micro"));
    }
    paranix::cli::run(stacks::project_with(&source))
}

/// A 64 MiB sparse raw disk with a recognisable first block, made once and kept (its identity must not
/// change between runs, or every run would upload it again).
fn placeholder_image() -> std::io::Result<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("PARANIX_STATE_DIR").unwrap_or_else(|| ".paranix".into())).join("sandbox");
    let path = dir.join("placeholder-disk.raw");
    if !path.exists() {
        std::fs::create_dir_all(&dir)?;
        let file = std::fs::File::create(&path)?;
        use std::io::Write;
        (&file).write_all(b"paranix sandbox placeholder disk: not a NixOS image\n")?;
        file.set_len(64 << 20)?;
    }
    Ok(path)
}
