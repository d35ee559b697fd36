//! `paranix-macros`: the `#[host]` attribute of paranix.
//!
//! The attribute itself arrives with its own issue; this crate is the workspace's home for it, so that macro
//! edits never rebuild the SDK.
