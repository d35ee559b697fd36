//! The paranix integration tests: one binary, one module per area.

// The reference workflow's stacks, shared with `cargo run --example printerfacts`.
#[allow(dead_code, reason = "not every test uses every item")]
#[path = "../../examples/printerfacts/stacks.rs"]
mod printerfacts_stacks;

/// Plans of the printerfacts stacks, snapshot-tested.
mod printerfacts;
