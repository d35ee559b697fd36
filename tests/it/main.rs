//! The paranix integration tests: one binary, one module per area.

// The reference workflow's stacks, shared with `cargo run --example printerfacts`.
#[allow(dead_code, reason = "not every test uses every item")]
#[path = "../../examples/printerfacts/stacks.rs"]
mod printerfacts_stacks;

/// Plans of the printerfacts stacks, snapshot-tested.
mod printerfacts;

/// Test fixtures shared by the modules below.
mod support;

/// A resource kind defined outside paranix.
mod kinds;

/// The planner: actions, reasons, lifecycle options, errors, redaction.
mod planner;

/// The executor: concurrency, ordering, failures, saved plans.
mod executor;

/// Property tests over random graphs.
mod property;

/// The NixOS side: every .nix file parses, no renamed option names remain, the pins are right.
mod nix_files;

/// The AWS providers against moto.
mod aws;

/// The reference workflow against moto, and concurrent runs.
mod workflow;

/// paranix's NixOS modules evaluated with the real module system (nixpkgs' lib).
mod nix_modules;

/// The NixOS image resource with real Nix.
mod nixos_image;

/// NixOS deploys over SSH against the rig.
mod deploy;

/// Paranoid checks at plan time.
mod checks;

/// Bad input, refused before any API call.
mod bad_input;

/// Crash safety: runs killed with SIGKILL converge without duplicates.
mod crash;

/// The printerfacts example end to end: moto for AWS, a rig target for the host, `#[host]` wiring them.
mod host;

/// Secrets: a poisoned deploy key appears nowhere paranix writes.
mod secrets;
