//! Sensitive values in state, encrypted at rest.
//!
//! With a key source configured ([`StateEncryption::passphrase`] or [`StateEncryption::kms`]; for the CLI,
//! `PARANIX_STATE_PASSPHRASE` or `PARANIX_STATE_KMS_KEY`), every sensitive attribute (a generated private key,
//! a deploy key set in configuration, a sensitive stack output) is stored as `paranix:encrypted:v1:<base64>`:
//! XChaCha20-Poly1305 under a 256-bit key that is either derived from the passphrase with Argon2id (a random
//! salt per state history) or a KMS data key (`GenerateDataKey` once per state history, kept in the state
//! encrypted by KMS with the stack and lineage as encryption context). The state's `encryption` header says
//! which, and holds the salt or the encrypted data key, never a key. Everything else stays readable, so
//! state can still be reviewed; OpenTofu's state encryption is the anchor, which encrypts the whole file.
//!
//! Each ciphertext is bound to its place: the associated data is the stack, lineage, serial, address and
//! attribute name. A value moved to another attribute, another stack or another history does not decrypt,
//! and neither does a state whose serial was edited. A whole older state put back in place (a replayed
//! S3 object version) is refused too: every load and save records the newest serial this machine has seen
//! of the history, and an older one is an error, not a silent rollback.
//!
//! Without a key source nothing is encrypted (plans say which secrets go to state in clear), and a state
//! that is encrypted is refused with a message naming the variable to set.

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

/// Keys derived from a passphrase.
const METHOD_PASSPHRASE: &str = "argon2id-xchacha20poly1305";
/// Data keys from AWS KMS (envelope encryption).
const METHOD_KMS: &str = "kms-xchacha20poly1305";

/// The environment variable the CLI reads a KMS key (id, ARN or `alias/...`) from.
pub const KMS_KEY_ENV: &str = "PARANIX_STATE_KMS_KEY";

/// What a state records about its encryption: the method and what recovers the key (never the key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionHeader {
    /// `argon2id-xchacha20poly1305` or `kms-xchacha20poly1305`.
    pub method: String,
    /// The Argon2id salt (base64), random per state history (passphrase method).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub salt: String,
    /// The KMS key that wraps the data key (KMS method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// The data key, encrypted by KMS under the state's stack and lineage as encryption context (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_data_key: Option<String>,
}

/// Where the key comes from.
enum KeySource {
    Passphrase(String),
    Kms { key_id: String, aws: Arc<crate::aws::AwsContext> },
}

/// A state encryption key source: a passphrase, or a KMS key wrapping a data key per state history. Never
/// printed (its `Debug` says so).
pub struct StateEncryption {
    source: KeySource,
    /// Keys by what recovers them (salt or encrypted data key): Argon2id is deliberately slow and KMS is a
    /// network call, and every save of a run uses the same key.
    keys: Mutex<BTreeMap<String, [u8; 32]>>,
}

impl std::fmt::Debug for StateEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            KeySource::Passphrase(_) => f.write_str("StateEncryption(passphrase: <sensitive>)"),
            KeySource::Kms { key_id, .. } => write!(f, "StateEncryption(kms: {key_id})"),
        }
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
        Ok(StateEncryption { source: KeySource::Passphrase(passphrase), keys: Mutex::new(BTreeMap::new()) })
    }

    /// Envelope encryption with AWS KMS: each state history gets a data key from `GenerateDataKey` under
    /// `key_id` (an id, ARN or `alias/...`), stored encrypted in the state and bound by KMS to the stack and
    /// lineage (encryption context), so it decrypts for no other state. Who may use the key is IAM's business.
    pub fn kms(aws: Arc<crate::aws::AwsContext>, key_id: impl Into<String>) -> Self {
        StateEncryption { source: KeySource::Kms { key_id: key_id.into(), aws }, keys: Mutex::new(BTreeMap::new()) }
    }

    /// Encryption from [`KMS_KEY_ENV`] (which needs `aws`) or [`PASSPHRASE_ENV`], if one is set.
    pub fn from_env(aws: Option<&Arc<crate::aws::AwsContext>>) -> Result<Option<Self>> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        match (var(KMS_KEY_ENV), var(PASSPHRASE_ENV)) {
            (Some(_), Some(_)) => {
                Err(Error::invalid(format!("set one of {KMS_KEY_ENV} and {PASSPHRASE_ENV}, not both")))
            }
            (Some(key), None) => match aws {
                Some(aws) => Ok(Some(Self::kms(aws.clone(), key))),
                None => Err(Error::invalid(format!("{KMS_KEY_ENV} is set, and AWS is not configured (no region)"))),
            },
            (None, Some(passphrase)) => Self::passphrase(passphrase).map(Some),
            (None, None) => Ok(None),
        }
    }

    fn method(&self) -> &'static str {
        match self.source {
            KeySource::Passphrase(_) => METHOD_PASSPHRASE,
            KeySource::Kms { .. } => METHOD_KMS,
        }
    }

    /// A header (and its key) for a state history that has none yet.
    async fn new_header(&self, state: &State) -> Result<EncryptionHeader> {
        match &self.source {
            KeySource::Passphrase(_) => Ok(EncryptionHeader {
                method: METHOD_PASSPHRASE.to_owned(),
                salt: base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes()),
                kms_key_id: None,
                encrypted_data_key: None,
            }),
            KeySource::Kms { key_id, aws } => {
                let out = aws
                    .kms
                    .generate_data_key()
                    .key_id(key_id)
                    .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
                    .set_encryption_context(Some(kms_context(state)))
                    .send()
                    .await
                    .map_err(|e| kms_error("GenerateDataKey", key_id, &e))?;
                let (Some(plaintext), Some(blob)) = (out.plaintext(), out.ciphertext_blob()) else {
                    return Err(Error::state(format!("KMS GenerateDataKey under {key_id} returned no key")));
                };
                let key: [u8; 32] = plaintext
                    .as_ref()
                    .try_into()
                    .map_err(|_| Error::state(format!("KMS GenerateDataKey under {key_id} returned no 256-bit key")))?;
                let encrypted = base64::engine::general_purpose::STANDARD.encode(blob.as_ref());
                self.keys.lock().expect("keys mutex").insert(kms_cache_key(state, &encrypted), key);
                Ok(EncryptionHeader {
                    method: METHOD_KMS.to_owned(),
                    salt: String::new(),
                    kms_key_id: Some(out.key_id().unwrap_or(key_id).to_owned()),
                    encrypted_data_key: Some(encrypted),
                })
            }
        }
    }

    /// The key of a state with `header`.
    async fn key(&self, header: &EncryptionHeader, state: &State) -> Result<[u8; 32]> {
        let blob = header.encrypted_data_key.clone().unwrap_or_default();
        let cache_key = match &self.source {
            KeySource::Passphrase(_) => header.salt.clone(),
            // A data key is valid for one stack and history only (its KMS encryption context): so is its cache entry.
            KeySource::Kms { .. } => kms_cache_key(state, &blob),
        };
        if let Some(key) = self.keys.lock().expect("keys mutex").get(&cache_key) {
            return Ok(*key);
        }
        let key = match &self.source {
            KeySource::Passphrase(passphrase) => {
                let salt = base64::engine::general_purpose::STANDARD
                    .decode(&header.salt)
                    .map_err(|_| Error::state("the state's encryption salt is not base64"))?;
                // OWASP's Argon2id minimum: 19 MiB, 2 passes, 1 lane.
                let params = argon2::Params::new(19 * 1024, 2, 1, Some(32)).expect("valid Argon2 parameters");
                let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
                let mut key = [0u8; 32];
                argon
                    .hash_password_into(passphrase.as_bytes(), &salt, &mut key)
                    .map_err(|e| Error::state(format!("cannot derive the state key: {e}")))?;
                key
            }
            KeySource::Kms { key_id, aws } => {
                let blob = base64::engine::general_purpose::STANDARD
                    .decode(&blob)
                    .map_err(|_| Error::state("the state's encrypted data key is not base64"))?;
                // Always the configured key, never one the state names: whoever can write the state must not
                // choose the key its secrets are sealed under.
                let wrapping = key_id.as_str();
                let out = aws
                    .kms
                    .decrypt()
                    .key_id(wrapping)
                    .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(blob))
                    .set_encryption_context(Some(kms_context(state)))
                    .send()
                    .await
                    .map_err(|e| kms_error("Decrypt", wrapping, &e))?;
                out.plaintext()
                    .and_then(|p| <[u8; 32]>::try_from(p.as_ref()).ok())
                    .ok_or_else(|| Error::state(format!("KMS Decrypt under {wrapping} returned no 256-bit key")))?
            }
        };
        self.keys.lock().expect("keys mutex").insert(cache_key, key);
        Ok(key)
    }
}

/// The cache entry of a KMS data key: the stack and history it was generated for, and the blob.
fn kms_cache_key(state: &State, blob: &str) -> String {
    format!("{}\0{}\0{blob}", state.stack, state.lineage)
}

/// The KMS encryption context of a state's data key: it decrypts for this stack and history only.
fn kms_context(state: &State) -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([
        ("paranix:stack".to_owned(), state.stack.clone()),
        ("paranix:lineage".to_owned(), state.lineage.clone()),
    ])
}

/// A KMS failure, with its code and message (never key material).
fn kms_error<E, R>(op: &str, key_id: &str, e: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> Error
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let failure = crate::aws::context::Failure::of(e);
    let code = failure.code.as_deref().unwrap_or("no error code");
    Error::state(format!("KMS {op} with key {key_id} failed: {code}: {}", failure.message))
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
    /// The header used for saves in this run, with the lineage it belongs to.
    header: Mutex<Option<(String, EncryptionHeader)>>,
}

impl EncryptingStore {
    pub(crate) fn new(
        inner: Box<dyn StateStore>,
        encryption: Option<Arc<StateEncryption>>,
        sensitive: Sensitivity,
        seen_dir: PathBuf,
        stack: &str,
    ) -> Self {
        let seen = seen_dir.join(format!("{stack}-{}.json", backend_tag(&inner.describe())));
        EncryptingStore { inner, encryption, sensitive, seen, header: Mutex::new(None) }
    }

    fn check_not_replayed(&self, state: &State) -> Result<()> {
        // (One record per stack and backend: the same stack name kept in two places are two histories.)
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

/// A short tag of a store's description, so each backend of a stack name has its own rollback record.
fn backend_tag(describe: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(describe.as_bytes()).iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// The newest serial of a history seen on this machine.
#[derive(Serialize, Deserialize)]
struct Seen {
    lineage: String,
    serial: u64,
}

/// The associated data binding a value to its place.
fn aad(binding: &str, address: &str, attribute: &str) -> Vec<u8> {
    format!("{binding}\0{address}\0{attribute}").into_bytes()
}

/// The part of every value's associated data that binds it to its state: stack, lineage and serial.
fn binding(state: &State) -> String {
    format!("paranix-state/v1\0{}\0{}\0{}", state.stack, state.lineage, state.serial)
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
        let Some(header) = state.encryption.clone() else {
            // Encrypted values without the header that says how: rewritten by an older paranix (which drops
            // the header) or edited. Passing them on would hand ciphertext to providers as a key.
            let mut encrypted = Vec::new();
            each_value(&mut state, |address, name, _, value| {
                if is_encrypted(value) {
                    encrypted.push(format!("{address}.{name}"));
                }
                Ok(())
            })?;
            if !encrypted.is_empty() {
                return Err(Error::state(format!(
                    "state of stack {:?} holds encrypted values ({}) but no encryption header: it was rewritten by \
                     an older paranix or edited; restore a version written by this one",
                    state.stack,
                    encrypted.join(", ")
                )));
            }
            if self.encryption.is_some() {
                self.check_not_replayed(&state)?;
            }
            return Ok(Some(state));
        };
        let Some(encryption) = &self.encryption else {
            let variable = if header.method == METHOD_KMS { KMS_KEY_ENV } else { PASSPHRASE_ENV };
            return Err(Error::state(format!(
                "state of stack {:?} ({}) holds encrypted values: set {variable} (method {})",
                state.stack,
                self.inner.describe(),
                header.method
            )));
        };
        if header.method != encryption.method() {
            return Err(Error::state(format!(
                "state of stack {:?} is encrypted with {:?}, and {:?} is configured",
                state.stack,
                header.method,
                encryption.method()
            )));
        }
        self.check_not_replayed(&state)?;
        let cipher = XChaCha20Poly1305::new(&encryption.key(&header, &state).await?.into());
        let binding = binding(&state);
        each_value(&mut state, |address, name, _, value| {
            if is_encrypted(value) {
                let text = value.as_str().unwrap_or_default().to_owned();
                *value = decrypt(&cipher, &aad(&binding, address, name), &text, &format!("{address}.{name}"))?;
            }
            Ok(())
        })?;
        self.record_seen(&state)?;
        *self.header.lock().expect("header mutex") = Some((state.lineage.clone(), header));
        Ok(Some(state))
    }

    async fn save(&self, state: &State) -> Result<()> {
        let Some(encryption) = &self.encryption else { return self.inner.save(state).await };
        // One header per state history: reused for every save of this run, made once for a new history.
        let cached = self.header.lock().expect("header mutex").clone();
        let header = match (cached, &state.encryption) {
            (Some((lineage, header)), _) if lineage == state.lineage => header,
            (_, Some(header)) if header.method == encryption.method() => header.clone(),
            _ => encryption.new_header(state).await?,
        };
        *self.header.lock().expect("header mutex") = Some((state.lineage.clone(), header.clone()));
        let cipher = XChaCha20Poly1305::new(&encryption.key(&header, state).await?.into());
        let mut sealed = state.clone();
        sealed.encryption = Some(header);
        let sensitive = self.sensitive.clone();
        let binding = binding(state);
        each_value(&mut sealed, |address, name, sensitive_output, value| {
            if is_encrypted(value) {
                // Only ever decrypted values reach a save; a ciphertext here could never be read back.
                return Err(Error::state(format!(
                    "refusing to save {address}.{name}: it holds a ciphertext this run did not decrypt"
                )));
            }
            let secret = sensitive_output || address.parse::<Address>().is_ok_and(|a| sensitive(&a, name));
            if secret && value.is_known() && *value != Attr::Null {
                *value = encrypt(&cipher, &aad(&binding, address, name), value);
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
    async fn encrypted_values_without_their_header_are_refused_not_passed_on() {
        // What an older paranix (which drops the unknown `encryption` field) or an editor leaves behind.
        let dir = tempfile::tempdir().expect("tempdir");
        let passphrase = Some("correct horse battery staple");
        store(dir.path(), passphrase).save(&state_with_secret(1)).await.expect("save");
        let mut state: serde_json::Value = serde_json::from_str(&file(dir.path())).expect("json");
        state.as_object_mut().expect("object").remove("encryption");
        std::fs::write(dir.path().join("web.json"), state.to_string()).expect("write");
        for configured in [passphrase, None] {
            let err = store(dir.path(), configured).load().await.expect_err("refused");
            assert!(err.to_string().contains("no encryption header"), "{err}");
            assert!(err.to_string().contains("aws_key_pair.deployer.private_key"), "{err}");
        }
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
