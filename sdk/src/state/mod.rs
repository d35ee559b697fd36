//! State: what paranix believes exists, versioned, with lineage and serial, and the stores that keep it.
//!
//! A [`State`] is written after every step of an apply (never batched on a timer), always atomically. Its
//! `pending` list is the journal: an intent recorded before each mutating call and removed when the outcome
//! is recorded, so an interrupted run leaves a record of exactly what might have happened.

pub mod encryption;
mod local;
mod s3;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use local::LocalStore;
pub use s3::S3Store;

use crate::address::Address;
use crate::attr::{Attr, Attrs};
use crate::error::{Error, ErrorKind, Result};

/// The state schema version this build writes and reads. A state with a higher version is refused.
pub const SCHEMA_VERSION: u32 = 1;

/// A stack's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Schema version of this document.
    pub version: u32,
    /// The stack this state belongs to.
    pub stack: String,
    /// A random id fixed when the state is first created; a state with another lineage is another history.
    pub lineage: String,
    /// Incremented on every write.
    pub serial: u64,
    /// Resources and data sources, by address.
    #[serde(default)]
    pub resources: BTreeMap<Address, ResourceState>,
    /// Stack outputs, by name.
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputState>,
    /// Mutating calls started and not yet recorded as finished (the journal).
    #[serde(default)]
    pub pending: Vec<PendingOperation>,
    /// Objects replaced with `create_before_destroy` whose delete has not happened yet.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deposed: BTreeMap<Address, ResourceState>,
    /// The last generation created at each address (kept after deletes, so tokens are never reused).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub generations: BTreeMap<Address, u64>,
    /// How sensitive values are encrypted, when they are (see [`encryption`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<encryption::EncryptionHeader>,
}

/// What the state records about one resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceState {
    /// Input fields as last applied (or as last read from the cloud).
    pub inputs: Attrs,
    /// Computed outputs.
    #[serde(default)]
    pub outputs: Attrs,
    /// What the resource depended on when it was applied; deletes run in reverse of this.
    #[serde(default)]
    pub dependencies: Vec<Address>,
    /// Incremented each time the address is created anew, so a deliberate re-create gets a fresh
    /// idempotency token.
    #[serde(default)]
    pub generation: u64,
}

impl ResourceState {
    /// An input or output attribute by name (inputs first).
    pub fn attribute(&self, name: &str) -> Option<&Attr> {
        self.inputs.get(name).or_else(|| self.outputs.get(name))
    }
}

/// A stack output as recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputState {
    /// The value.
    pub value: Attr,
    /// Redacted in listings unless asked for by name.
    #[serde(default)]
    pub sensitive: bool,
}

/// The kind of a mutating call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Creating an object.
    Create,
    /// Updating an object in place.
    Update,
    /// Deleting an object.
    Delete,
}

/// A journal entry: a mutating call that started and whose outcome is not recorded yet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingOperation {
    /// The resource.
    pub address: Address,
    /// The call.
    pub operation: Operation,
    /// The idempotency token the call used (creates), derived from stack, address and generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// When the call started (seconds since the Unix epoch).
    pub started_at: u64,
}

impl State {
    /// A fresh, empty state for `stack` with a new lineage.
    pub fn new(stack: &str) -> Self {
        State {
            version: SCHEMA_VERSION,
            stack: stack.to_owned(),
            lineage: uuid::Uuid::new_v4().to_string(),
            serial: 0,
            resources: BTreeMap::new(),
            outputs: BTreeMap::new(),
            pending: Vec::new(),
            deposed: BTreeMap::new(),
            generations: BTreeMap::new(),
            encryption: None,
        }
    }

    /// Parses a state document, refusing newer schema versions and states of other stacks.
    pub fn from_json(text: &str, expected_stack: &str, origin: &str) -> Result<Self> {
        let probe: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::state(format!("state {origin} is not valid JSON (line {}): {e}", e.line())))?;
        let version = probe.get("version").and_then(serde_json::Value::as_u64).unwrap_or(0);
        if version > u64::from(SCHEMA_VERSION) {
            return Err(Error::state(format!(
                "state {origin} has schema version {version}, newer than this paranix understands \
                 ({SCHEMA_VERSION}); upgrade paranix instead of overwriting it"
            )));
        }
        let state: State = serde_json::from_value(probe)
            .map_err(|e| Error::state(format!("state {origin} is not a paranix state: {e}")))?;
        if state.stack != expected_stack {
            return Err(Error::state(format!(
                "state {origin} belongs to stack {:?}, not {expected_stack:?}",
                state.stack
            )));
        }
        Ok(state)
    }

    /// The state as pretty JSON, the form stores write.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("state always serialises");
        text.push('\n');
        text
    }

    /// True if the state records no resources, outputs or pending operations.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.outputs.is_empty() && self.pending.is_empty() && self.deposed.is_empty()
    }

    /// The managed resources (not data sources).
    pub fn managed(&self) -> impl Iterator<Item = (&Address, &ResourceState)> {
        self.resources.iter().filter(|(a, _)| a.mode() == crate::address::Mode::Managed)
    }
}

/// Who holds a lock, for what, since when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// A random id; `state unlock ID` must name it.
    pub id: String,
    /// The operation (`plan`, `up`, `destroy`, ...).
    pub operation: String,
    /// `user@host`.
    pub who: String,
    /// The holder's process id.
    pub pid: u32,
    /// The holder's host name.
    pub host: String,
    /// When the lock was taken (seconds since the Unix epoch).
    pub created: u64,
    /// The paranix version of the holder.
    pub version: String,
}

impl LockInfo {
    /// A lock description for this process.
    pub fn for_this_process(operation: &str) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "unknown-host".to_owned());
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            operation: operation.to_owned(),
            who: format!("{user}@{host}"),
            pid: std::process::id(),
            host,
            created: unix_now(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// "root@web (pid 42) for `up` since 2026-11-25T20:00:00Z (3m ago), lock id ..."
    pub fn describe(&self) -> String {
        format!(
            "{} (pid {}) for `{}` since {} ({} ago), lock id {}",
            self.who,
            self.pid,
            self.operation,
            rfc3339(self.created),
            human_age(unix_now().saturating_sub(self.created)),
            self.id
        )
    }
}

/// Where a stack's state lives: loads and saves it and holds the stack's lock.
///
/// Implementations check lineage and serial on every save, so two histories can never overwrite each other.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// A short description for messages, e.g. `local file .paranix/bootstrap.json`.
    fn describe(&self) -> String;

    /// Takes the stack's lock for `operation`, or fails with [`ErrorKind::LockHeld`] (naming holder,
    /// operation and age) or [`ErrorKind::LockStale`]. Never waits and never steals.
    async fn lock(&self, operation: &str) -> Result<LockInfo>;

    /// Releases the lock this store took.
    async fn unlock(&self) -> Result<()>;

    /// Releases a lock deliberately (`state unlock ID`): only if its id is `id`.
    async fn force_unlock(&self, id: &str) -> Result<()>;

    /// Loads the state, `None` if the stack has none yet.
    async fn load(&self) -> Result<Option<State>>;

    /// Saves the state atomically. The caller holds the lock.
    async fn save(&self, state: &State) -> Result<()>;
}

/// Writes a file only its owner can read (mode 0600): state, plans, private keys.
pub(crate) fn write_private_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(bytes)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Formats seconds since the epoch as an RFC 3339 UTC timestamp.
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian), by 400-year eras.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn human_age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h{}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

pub(crate) fn lock_held(stack: &str, info: &LockInfo) -> Error {
    Error::new(ErrorKind::LockHeld, format!("the state of stack {stack:?} is locked by {}", info.describe()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_638_896), "2026-11-25T20:34:56Z");
    }

    #[test]
    fn newer_schema_versions_and_other_stacks_are_refused() {
        let mut state = State::new("web");
        state.version = SCHEMA_VERSION + 1;
        let err = State::from_json(&state.to_json(), "web", "test").expect_err("newer");
        assert!(err.to_string().contains("newer than this paranix understands"), "{err}");
        state.version = SCHEMA_VERSION;
        let err = State::from_json(&state.to_json(), "db", "test").expect_err("other stack");
        assert!(err.to_string().contains("belongs to stack \"web\""), "{err}");
        assert_eq!(State::from_json(&state.to_json(), "web", "test").expect("same"), state);
    }
}
