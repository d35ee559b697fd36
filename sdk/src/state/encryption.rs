//! Sensitive values in state, encrypted at rest.
//!
//! With a passphrase configured ([`StateEncryption::passphrase`], or `PARANIX_STATE_PASSPHRASE` for the
//! CLI), every sensitive attribute (a generated private key, a deploy key set in configuration, a sensitive
//! stack output) is stored as `paranix:encrypted:v1:<base64>`: XChaCha20-Poly1305 under a key derived from
//! the passphrase with Argon2id (a random salt per state history, kept in the state's `encryption`
//! header). Everything else stays readable, so `git diff`-style review of state still works; OpenTofu's state
//! encryption is the anchor, which encrypts the whole file instead.
//!
//! Each ciphertext is bound to its place: the associated data is the stack, lineage, serial, address and
//! attribute name. A value moved to another attribute, another stack or another history does not decrypt,
//! and neither does a state whose serial was edited. A whole older state put back in place (a replayed
//! S3 object version) is refused too: every load and save records the newest serial this machine has seen
//! of the history, and an older one is an error, not a silent rollback.
//!
//! Without a passphrase nothing is encrypted, and a state that is encrypted is refused with a message
//! naming the variable to set.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use super::{LockInfo, State, StateStore};
use crate::address::Address;
use crate::attr::Attr;
use crate::error::{Error, Result};

/// The environment variable the CLI reads the state passphrase from.
pub const PASSPHRASE_ENV: &str = "PARANIX_STATE_PASSPHRASE";

/// The shortest passphrase accepted (as OpenTofu's).
pub const MIN_PASSPHRASE_LEN: usize = 16;

/// The prefix of an encrypted value.
const PREFIX: &str = "paranix:encrypted:v1:";

/// The one method this version writes.
const METHOD: &str = "argon2id-xchacha20poly1305";

/// What a state records about its encryption: the method and the key derivation's salt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionHeader {
    /// `argon2id-xchacha20poly1305`.
    pub method: String,
    /// The Argon2id salt (base64), random per state history.
    pub salt: String,
}

/// A state encryption key source: a passphrase. Never printed (its `Debug` says so).
pub struct StateEncryption {
    passphrase: String,
    /// Derived keys by salt: Argon2id is deliberately slow, and every save of a run uses the same salt.
    keys: Mutex<BTreeMap<String, [u8; 32]>>,
}

impl std::fmt::Debug for StateEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateEncryption(passphrase: <sensitive>)")
    }
}

impl StateEncryption {
    /// Encryption with a key derived from `passphrase` (at least [`MIN_PASSPHRASE_LEN`] characters).
    pub fn passphrase(passphrase: impl Into<String>) -> Result<Self> {
        let passphrase = passphrase.into();
        if passphrase.chars().count() < MIN_PASSPHRASE_LEN {
            return Err(Error::invalid(format!(
                "the state passphrase is shorter than {MIN_PASSPHRASE_LEN} characters"
            )));
        }
        Ok(StateEncryption { passphrase, keys: Mutex::new(BTreeMap::new()) })
    }

    /// Encryption from [`PASSPHRASE_ENV`], if it is set.
    pub fn from_env() -> Result<Option<Self>> {
        match std::env::var(PASSPHRASE_ENV) {
            Ok(p) if !p.is_empty() => Self::passphrase(p).map(Some),
            _ => Ok(None),
        }
    }

    fn key(&self, salt: &str) -> Result<[u8; 32]> {
        let mut keys = self.keys.lock().expect("keys mutex");
        if let Some(key) = keys.get(salt) {
            return Ok(*key);
        }
        let salt_bytes = base64::engine::general_purpose::STANDARD
            .decode(salt)
            .map_err(|_| Error::state("the state's encryption salt is not base64"))?;
        // OWASP's Argon2id minimum: 19 MiB, 2 passes, 1 lane.
        let params = argon2::Params::new(19 * 1024, 2, 1, Some(32)).expect("valid Argon2 parameters");
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = [0u8; 32];
        argon
            .hash_password_into(self.passphrase.as_bytes(), &salt_bytes, &mut key)
            .map_err(|e| Error::state(format!("cannot derive the state key: {e}")))?;
        keys.insert(salt.to_owned(), key);
        Ok(key)
    }
}

/// Which attributes of a state are sensitive.
pub(crate) type Sensitivity = Arc<dyn Fn(&Address, &str) -> bool + Send + Sync>;

/// A store that encrypts sensitive values on save and decrypts them on load (or, without a key, refuses
/// encrypted states).
pub(crate) struct EncryptingStore {
    inner: Box<dyn StateStore>,
    encryption: Option<Arc<StateEncryption>>,
    sensitive: Sensitivity,
    /// Where the newest serial seen of each history is kept (`<state dir>/seen/<stack>.json`).
    seen: PathBuf,
    /// The header used for saves in this run.
    header: Mutex<Option<EncryptionHeader>>,
}

impl EncryptingStore {
    pub(crate) fn new(
        inner: Box<dyn StateStore>,
        encryption: Option<Arc<StateEncryption>>,
        sensitive: Sensitivity,
        seen_dir: PathBuf,
        stack: &str,
    ) -> Self {
        EncryptingStore {
            inner,
            encryption,
            sensitive,
            seen: seen_dir.join(format!("{stack}.json")),
            header: Mutex::new(None),
        }
    }

    fn check_not_replayed(&self, state: &State) -> Result<()> {
        let Ok(text) = std::fs::read_to_string(&self.seen) else { return Ok(()) };
        let Ok(seen) = serde_json::from_str::<Seen>(&text) else { return Ok(()) };
        if seen.lineage == state.lineage && state.serial < seen.serial {
            return Err(Error::state(format!(
                "state of stack {:?} was rolled back: serial {} is older than serial {} seen on this machine \
                 (an older copy was put back?); restore the newest version, or remove {} if the rollback is \
                 deliberate",
                state.stack,
                state.serial,
                seen.serial,
                self.seen.display()
            )));
        }
        Ok(())
    }

    fn record_seen(&self, state: &State) -> Result<()> {
        let seen = Seen { lineage: state.lineage.clone(), serial: state.serial };
        if let Some(dir) = self.seen.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::state(format!("cannot create {}: {e}", dir.display())))?;
        }
        let text = serde_json::to_string(&seen).expect("serialises");
        super::write_private_file(&self.seen, text.as_bytes())
            .map_err(|e| Error::state(format!("cannot write {}: {e}", self.seen.display())))
    }
}

/// The newest serial of a history seen on this machine.
#[derive(Serialize, Deserialize)]
struct Seen {
    lineage: String,
    serial: u64,
}

/// The associated data binding a value to its place.
fn aad(state: &State, address: &str, attribute: &str) -> Vec<u8> {
    format!("paranix-state/v1\0{}\0{}\0{}\0{address}\0{attribute}", state.stack, state.lineage, state.serial)
        .into_bytes()
}

fn encrypt(cipher: &XChaCha20Poly1305, aad: &[u8], value: &Attr) -> Attr {
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let plaintext = value.to_json().to_string();
    let sealed = cipher.encrypt(&nonce, Payload { msg: plaintext.as_bytes(), aad }).expect("encryption cannot fail");
    let mut bytes = nonce.to_vec();
    bytes.extend(sealed);
    Attr::Str(format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
}

fn decrypt(cipher: &XChaCha20Poly1305, aad: &[u8], text: &str, what: &str) -> Result<Attr> {
    let refuse = || {
        Error::state(format!(
            "cannot decrypt {what}: a wrong passphrase, or the value was moved or the state edited (each value \
             is bound to its stack, lineage, serial, address and attribute)"
        ))
    };
    let bytes = base64::engine::general_purpose::STANDARD.decode(&text[PREFIX.len()..]).map_err(|_| refuse())?;
    if bytes.len() < 24 {
        return Err(refuse());
    }
    let (nonce, sealed) = bytes.split_at(24);
    let plain = cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad }).map_err(|_| refuse())?;
    let json: serde_json::Value = serde_json::from_slice(&plain).map_err(|_| refuse())?;
    Attr::from_json(&json).map_err(|_| refuse())
}

fn is_encrypted(value: &Attr) -> bool {
    value.as_str().is_some_and(|s| s.starts_with(PREFIX))
}

/// Applies `f` to every top-level attribute of every resource (current and deposed) and stack output.
fn each_value(state: &mut State, mut f: impl FnMut(&str, &str, bool, &mut Attr) -> Result<()>) -> Result<()> {
    let mut resources: Vec<(&Address, &mut super::ResourceState)> = state.resources.iter_mut().collect();
    resources.extend(state.deposed.iter_mut());
    for (address, resource) in resources {
        let address = address.to_string();
        for attrs in [&mut resource.inputs, &mut resource.outputs] {
            for (name, value) in attrs.iter_mut() {
                f(&address, name, false, value)?;
            }
        }
    }
    for (name, output) in &mut state.outputs {
        f("output", name, output.sensitive, &mut output.value)?;
    }
    Ok(())
}

#[async_trait]
impl StateStore for EncryptingStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn lock(&self, operation: &str) -> Result<LockInfo> {
        self.inner.lock(operation).await
    }

    async fn unlock(&self) -> Result<()> {
        self.inner.unlock().await
    }

    async fn force_unlock(&self, id: &str) -> Result<()> {
        self.inner.force_unlock(id).await
    }

    async fn load(&self) -> Result<Option<State>> {
        let Some(mut state) = self.inner.load().await? else { return Ok(None) };
        let Some(header) = state.encryption.clone() else { return Ok(Some(state)) };
        let Some(encryption) = &self.encryption else {
            return Err(Error::state(format!(
                "state of stack {:?} ({}) holds encrypted values: set {PASSPHRASE_ENV} to its passphrase",
                state.stack,
                self.inner.describe()
            )));
        };
        if header.method != METHOD {
            return Err(Error::state(format!(
                "state of stack {:?} is encrypted with {:?}, which this paranix does not know",
                state.stack, header.method
            )));
        }
        self.check_not_replayed(&state)?;
        let cipher = XChaCha20Poly1305::new(&encryption.key(&header.salt)?.into());
        let snapshot = state.clone();
        each_value(&mut state, |address, name, _, value| {
            if is_encrypted(value) {
                let text = value.as_str().unwrap_or_default().to_owned();
                *value = decrypt(&cipher, &aad(&snapshot, address, name), &text, &format!("{address}.{name}"))?;
            }
            Ok(())
        })?;
        self.record_seen(&state)?;
        *self.header.lock().expect("header mutex") = Some(header);
        Ok(Some(state))
    }

    async fn save(&self, state: &State) -> Result<()> {
        let Some(encryption) = &self.encryption else { return self.inner.save(state).await };
        let header = self
            .header
            .lock()
            .expect("header mutex")
            .get_or_insert_with(|| {
                state.encryption.clone().unwrap_or_else(|| EncryptionHeader {
                    method: METHOD.to_owned(),
                    salt: base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes()),
                })
            })
            .clone();
        let cipher = XChaCha20Poly1305::new(&encryption.key(&header.salt)?.into());
        let mut sealed = state.clone();
        sealed.encryption = Some(header);
        let sensitive = self.sensitive.clone();
        each_value(&mut sealed, |address, name, sensitive_output, value| {
            let secret = sensitive_output || address.parse::<Address>().is_ok_and(|a| sensitive(&a, name));
            if secret && value.is_known() && *value != Attr::Null && !is_encrypted(value) {
                *value = encrypt(&cipher, &aad(state, address, name), value);
            }
            Ok(())
        })?;
        self.inner.save(&sealed).await?;
        self.record_seen(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attrs;
    use crate::state::LocalStore;

    const MARKER: &str = "POISON-private-key-7f3a";

    fn store(dir: &std::path::Path, passphrase: Option<&str>) -> EncryptingStore {
        let encryption = passphrase.map(|p| Arc::new(StateEncryption::passphrase(p).expect("long enough")));
        let sensitive: Sensitivity = Arc::new(|_: &Address, name: &str| name == "private_key");
        EncryptingStore::new(Box::new(LocalStore::new(dir, "web")), encryption, sensitive, dir.join("seen"), "web")
    }

    fn state_with_secret(serial: u64) -> State {
        let mut state = State::new("web");
        state.serial = serial;
        let address = Address::managed("aws_key_pair", "deployer");
        let outputs = Attrs::from([
            ("private_key".to_owned(), Attr::str(MARKER)),
            ("key_name".to_owned(), Attr::str("deployer")),
        ]);
        state.resources.insert(
            address,
            super::super::ResourceState { inputs: Attrs::new(), outputs, dependencies: Vec::new(), generation: 1 },
        );
        state
    }

    fn file(dir: &std::path::Path) -> String {
        std::fs::read_to_string(dir.join("web.json")).expect("state file")
    }

    #[tokio::test]
    async fn sensitive_values_are_encrypted_at_rest_and_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = state_with_secret(1);
        store(dir.path(), Some("correct horse battery staple")).save(&state).await.expect("save");
        let text = file(dir.path());
        assert!(!text.contains(MARKER), "{text}");
        assert!(text.contains(PREFIX) && text.contains("\"deployer\""), "only the secret is encrypted: {text}");
        let loaded = store(dir.path(), Some("correct horse battery staple")).load().await.expect("load");
        let mut loaded = loaded.expect("a state");
        loaded.encryption = None;
        assert_eq!(loaded, state);
    }

    #[tokio::test]
    async fn a_wrong_or_missing_passphrase_is_refused_without_showing_the_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        store(dir.path(), Some("correct horse battery staple")).save(&state_with_secret(1)).await.expect("save");
        let wrong = store(dir.path(), Some("incorrect horse battery staple")).load().await.expect_err("wrong");
        assert!(wrong.to_string().contains("cannot decrypt aws_key_pair.deployer.private_key"), "{wrong}");
        let missing = store(dir.path(), None).load().await.expect_err("missing");
        assert!(missing.to_string().contains(PASSPHRASE_ENV), "{missing}");
        assert!(!format!("{wrong}{missing}").contains(MARKER));
        assert!(StateEncryption::passphrase("short").is_err());
    }

    #[tokio::test]
    async fn an_edited_serial_or_a_replayed_older_state_is_noticed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let passphrase = Some("correct horse battery staple");
        let first = state_with_secret(1);
        store(dir.path(), passphrase).save(&first).await.expect("save 1");
        let old = file(dir.path());
        store(dir.path(), passphrase).save(&State { serial: 2, ..first }).await.expect("save 2");

        // The serial edited forward: the values no longer decrypt.
        let mut state: serde_json::Value = serde_json::from_str(&old).expect("json");
        state["serial"] = 7.into();
        std::fs::write(dir.path().join("web.json"), state.to_string()).expect("write");
        let edited = store(dir.path(), passphrase).load().await.expect_err("edited");
        assert!(edited.to_string().contains("cannot decrypt"), "{edited}");

        // The older state put back as it was: refused as a rollback.
        std::fs::write(dir.path().join("web.json"), &old).expect("write");
        let replayed = store(dir.path(), passphrase).load().await.expect_err("replayed");
        assert!(replayed.to_string().contains("rolled back: serial 1 is older than serial 2"), "{replayed}");
    }
}
