//! [`Deployment`]: a NixOS system deployed to a host over SSH, as a planned resource whose identity is the
//! system's store path (the "toplevel"), and [`Deployer`], its provider.
//!
//! One deploy, per host (the phases are in `deploy/run.rs`, what runs on the host in `deploy/protocol.rs`):
//!
//! 1. connect (one multiplexed connection, the host key verified before anything else, [`super::ssh`]);
//! 2. read what the host runs and any deploy still waiting for its decision: one that installed the wanted
//!    system is verified and confirmed, any other is cancelled (its rollback target is inherited);
//! 3. copy the closure (only missing paths travel; the path list goes over stdin, never a command line);
//! 4. `switch-to-configuration check` where the system has it: inhibitors are reported before anything changes;
//! 5. one detached script (`systemd-run`, else `setsid`) activates the system (`switch-to-configuration test`),
//!    and then waits for a decision: a confirmation, or the end of the confirmation window counted from the end
//!    of activation, when it rolls back by itself (the watchdog); once confirmed, a `switch` becomes the boot
//!    default (profile, `switch-to-configuration boot`);
//! 6. a fresh login (a new connection must still work), then the health checks;
//! 7. confirm: exactly one of "confirmed" and "rolled back" is ever decided (an atomic `mkdir` on the host).
//!
//! A failed check asks the host's script to roll back and waits for it; the error says what the host runs. A
//! host that stops answering rolls back by itself. A `switch` activates with `switch-to-configuration test`
//! and becomes the boot default only once confirmed, so a host that reboots before the confirmation boots the
//! last confirmed system. Exit 100 of `switch-to-configuration` (an incompatible init: nothing can be activated)
//! makes a `switch` the boot default and records it apart from the running system; the host runs it after its
//! next reboot, which paranix does not trigger: without a one-shot boot entry, a reboot into an unconfirmed
//! system could not be undone from here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::ssh::{HostKeyPolicy, Target, WorkDir, fingerprint};
use crate::address::{Address, Mode};
use crate::attr::{Attr, Attrs};
use crate::aws::AwsContext;
use crate::error::{Error, ErrorKind, Result};
use crate::provider::{Observed, Provider, ReadRequest, StepContext};
use crate::resource::{Handle, Lifecycle, Resource, Validator};
use crate::schema::{Field, OutputField, Schema};
use crate::state::ResourceState;
use crate::value::{HostAddress, InstanceId, Output, PublicKey, StorePath, Value};

/// The system profile NixOS boots from.
pub const SYSTEM_PROFILE: &str = "/nix/var/nix/profiles/system";

pub(crate) mod protocol;
pub(crate) mod run;

/// A health check run after activation; the deploy is confirmed only when all pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthCheck {
    /// `GET http://<host><path>` on `port` from the deployer must answer 2xx.
    Http {
        /// The port.
        port: u16,
        /// The path, e.g. `/fact`.
        path: String,
    },
    /// A command on the host must exit 0.
    Command(Vec<String>),
}

impl HealthCheck {
    /// An HTTP check of `path` on `port`.
    pub fn http(port: u16, path: impl Into<String>) -> Self {
        HealthCheck::Http { port, path: path.into() }
    }

    /// A command check (argv).
    pub fn command<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        HealthCheck::Command(argv.into_iter().map(Into::into).collect())
    }

    fn to_attr(&self) -> Attr {
        match self {
            HealthCheck::Http { port, path } => Attr::Map(
                [("http".to_owned(), Attr::str(path)), ("port".to_owned(), Attr::Int(i64::from(*port)))].into(),
            ),
            HealthCheck::Command(argv) => {
                Attr::Map([("command".to_owned(), Attr::List(argv.iter().map(Attr::str).collect()))].into())
            }
        }
    }

    fn from_attr(attr: &Attr) -> Option<HealthCheck> {
        let map = attr.as_map()?;
        if let Some(path) = map.get("http").and_then(Attr::as_str) {
            let port = map.get("port").and_then(Attr::as_int).unwrap_or(80);
            return Some(HealthCheck::http(u16::try_from(port).ok()?, path));
        }
        let argv = map.get("command")?.as_list()?;
        Some(HealthCheck::Command(argv.iter().filter_map(Attr::as_str).map(str::to_owned).collect()))
    }
}

/// How a deploy's host key is given.
#[derive(Clone, Debug)]
pub enum HostKey {
    /// The key the host must present (a literal, or e.g. an instance's console-reported key).
    Pinned(Value<PublicKey>),
    /// Trust on first use, then pin (asked for explicitly; never the default).
    TrustOnFirstUse,
}

/// A NixOS system deployed to a host over SSH.
#[derive(Clone, Debug)]
pub struct Deployment {
    name: String,
    host: Option<Value<HostAddress>>,
    port: i64,
    user: String,
    host_key: Option<HostKey>,
    private_key: Option<crate::value::Redacted<Value<String>>>,
    identity_file: Option<PathBuf>,
    toplevel: Option<Value<StorePath>>,
    action: String,
    health: Vec<HealthCheck>,
    health_deadline: Duration,
    confirm_within: Duration,
    connect_timeout: Duration,
    instance: Option<Value<InstanceId>>,
    lifecycle: Lifecycle,
}

static DEPLOYMENT_FIELDS: [Field; 13] = [
    Field::new("action"),
    Field::new("confirm_within"),
    Field::new("connect_timeout"),
    Field::new("health_checks"),
    Field::new("health_deadline"),
    Field::new("host"),
    Field::new("host_key"),
    Field::new("identity_file"),
    Field::new("instance_id"),
    Field::new("port"),
    Field::new("ssh_private_key").sensitive(),
    Field::new("toplevel"),
    Field::new("user"),
];

static DEPLOYMENT_OUTPUTS: [OutputField; 3] = [
    // The system the boot loader starts (the profile); differs from `current_system` after an exit 100.
    OutputField::new("boot_system"),
    // The system running on the host.
    OutputField::new("current_system"),
    OutputField::new("host_public_key"),
];

/// The schema of [`Deployment`].
pub static DEPLOYMENT: Schema = Schema {
    kind: "nixos_deployment",
    mode: Mode::Managed,
    fields: &DEPLOYMENT_FIELDS,
    outputs: &DEPLOYMENT_OUTPUTS,
    id: Some("current_system"),
    predict: crate::schema::predict_nothing,
    open_outputs: false,
};

/// The longest a deploy waits for anything (health checks, the confirmation window, a connection).
pub const MAX_WINDOW: Duration = Duration::from_secs(86_400);

/// Checks a NixOS toplevel: a store path itself (`/nix/store/<32-character hash>-<name>`), not a path inside
/// or beside one (`/nix/store/../..`), since the host runs `<toplevel>/bin/switch-to-configuration` as root.
pub fn check_store_path(path: &str) -> std::result::Result<(), String> {
    const HASH: &str = "0123456789abcdfghijklmnpqrsvwxyz";
    let Some(base) = path.strip_prefix("/nix/store/") else {
        return Err(format!("{path:?} is not a store path (/nix/store/<hash>-<name>)"));
    };
    let (hash, name) = base.split_at_checked(32).unwrap_or((base, ""));
    let name_ok = name.strip_prefix('-').is_some_and(|n| {
        !n.is_empty() && !n.starts_with('.') && n.chars().all(|c| c.is_ascii_alphanumeric() || "+-._?=".contains(c))
    });
    if hash.len() != 32 || !hash.chars().all(|c| HASH.contains(c)) || !name_ok {
        return Err(format!("{path:?} is not a store path (/nix/store/<32-character hash>-<name>, nothing after it)"));
    }
    Ok(())
}

/// The actions `switch-to-configuration` takes.
pub const ACTIONS: [&str; 4] = ["switch", "boot", "test", "dry-activate"];

impl Deployment {
    /// A deployment with logical name `name` (`switch`, as root on port 22, confirmed within 5 minutes).
    pub fn new(name: impl Into<String>) -> Self {
        Deployment {
            name: name.into(),
            host: None,
            port: 22,
            user: "root".into(),
            host_key: None,
            private_key: None,
            identity_file: None,
            toplevel: None,
            action: "switch".into(),
            health: Vec::new(),
            health_deadline: Duration::from_secs(60),
            confirm_within: Duration::from_secs(300),
            connect_timeout: super::ssh::CONNECT_TIMEOUT,
            instance: None,
            lifecycle: Lifecycle::default(),
        }
    }

    /// The host's address (e.g. `instance.public_ip()`).
    pub fn host(mut self, host: impl Into<Value<HostAddress>>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// The SSH port (22 by default).
    pub fn port(mut self, port: i64) -> Self {
        self.port = port;
        self
    }

    /// The login user (root by default; others deploy through `sudo -n`).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// Pins the host key the host must present.
    pub fn host_key(mut self, key: impl Into<Value<PublicKey>>) -> Self {
        self.host_key = Some(HostKey::Pinned(key.into()));
        self
    }

    /// Trusts the host key presented on the first connection and pins it from then on.
    pub fn trust_host_key_on_first_use(mut self) -> Self {
        self.host_key = Some(HostKey::TrustOnFirstUse);
        self
    }

    /// The login's private key (sensitive; e.g. a generated key pair's `private_key()`).
    pub fn private_key(mut self, key: impl Into<Value<String>>) -> Self {
        self.private_key = Some(crate::value::Redacted(key.into()));
        self
    }

    /// The login's private key file.
    pub fn identity_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.identity_file = Some(path.into());
        self
    }

    /// The system to deploy: a NixOS toplevel store path.
    pub fn toplevel(mut self, toplevel: impl Into<Value<StorePath>>) -> Self {
        self.toplevel = Some(toplevel.into());
        self
    }

    /// `switch` (default), `boot`, `test` or `dry-activate`.
    pub fn action(mut self, action: impl Into<String>) -> Self {
        self.action = action.into();
        self
    }

    /// Adds a health check.
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health.push(check);
        self
    }

    /// How long health checks may keep failing before the deploy rolls back (60 s by default).
    pub fn health_deadline(mut self, deadline: Duration) -> Self {
        self.health_deadline = deadline;
        self
    }

    /// How long the host waits for the confirmation, counted from the end of activation, before it rolls back
    /// by itself (5 minutes by default). At least the health deadline plus two connect timeouts (the fresh login
    /// and the confirmation), so the host never rolls back while the deploy may still confirm.
    pub fn confirm_within(mut self, within: Duration) -> Self {
        self.confirm_within = within;
        self
    }

    /// How long one SSH connection may take to be established (15 s by default). The confirmation window must
    /// leave room for two of them after the health checks (see [`Deployment::confirm_within`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Records the deployed toplevel as the tag `paranix:toplevel` of this instance.
    pub fn instance(mut self, instance: impl Into<Value<InstanceId>>) -> Self {
        self.instance = Some(instance.into());
        self
    }
}

/// A duration in whole seconds, saturating (validation refuses anything over [`MAX_WINDOW`]).
fn seconds(d: Duration) -> Attr {
    Attr::Int(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Resource for Deployment {
    fn schema() -> &'static Schema {
        &DEPLOYMENT
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Attrs {
        let host_key = match &self.host_key {
            Some(HostKey::Pinned(key)) => Attr::Map([("pinned".to_owned(), key.to_attr())].into()),
            Some(HostKey::TrustOnFirstUse) => Attr::Map([("trust_on_first_use".to_owned(), Attr::Bool(true))].into()),
            None => Attr::Null,
        };
        Attrs::from([
            ("action".into(), Attr::str(&self.action)),
            ("confirm_within".into(), seconds(self.confirm_within)),
            ("connect_timeout".into(), seconds(self.connect_timeout)),
            ("health_checks".into(), Attr::List(self.health.iter().map(HealthCheck::to_attr).collect())),
            ("health_deadline".into(), seconds(self.health_deadline)),
            ("host".into(), self.host.as_ref().map_or(Attr::Null, Value::to_attr)),
            ("host_key".into(), host_key),
            (
                "identity_file".into(),
                self.identity_file.as_ref().map_or(Attr::Null, |p| Attr::Str(p.display().to_string())),
            ),
            ("instance_id".into(), self.instance.as_ref().map_or(Attr::Null, Value::to_attr)),
            ("port".into(), Attr::Int(self.port)),
            ("ssh_private_key".into(), self.private_key.as_ref().map_or(Attr::Null, |key| key.0.to_attr())),
            ("toplevel".into(), self.toplevel.as_ref().map_or(Attr::Null, Value::to_attr)),
            ("user".into(), Attr::str(&self.user)),
        ])
    }

    fn validate(&self, v: &mut Validator<'_>) {
        if self.host.is_none() {
            v.error("host", "required: the address to deploy to (e.g. `instance.public_ip()`)");
        }
        if self.host_key.is_none() {
            v.error(
                "host_key",
                "required: pin the host key (`host_key(...)`) or ask for `trust_host_key_on_first_use()`",
            );
        }
        if let Some(HostKey::Pinned(Value::Known(key))) = &self.host_key
            && fingerprint(key.as_str()).is_none()
        {
            v.error("host_key", "not an OpenSSH public key line (`ssh-ed25519 AAAA...`)");
        }
        if self.private_key.is_none() && self.identity_file.is_none() {
            v.error("ssh_private_key", "required: `private_key(...)` or `identity_file(...)`");
        }
        if self.toplevel.is_none() {
            v.error("toplevel", "required: the NixOS system to deploy");
        }
        if let Some(Value::Known(path)) = &self.toplevel {
            v.check("toplevel", check_store_path(path.as_str()));
        }
        for (field, value) in [
            ("health_deadline", self.health_deadline),
            ("confirm_within", self.confirm_within),
            ("connect_timeout", self.connect_timeout),
        ] {
            if value > MAX_WINDOW {
                v.error(
                    field,
                    format!(
                        "{} s is more than a day ({} s), the longest paranix waits",
                        value.as_secs(),
                        MAX_WINDOW.as_secs()
                    ),
                );
            }
        }
        if !ACTIONS.contains(&self.action.as_str()) {
            v.error("action", format!("{:?} is not one of {}", self.action, ACTIONS.join(", ")));
        }
        if !(1..=65_535).contains(&self.port) {
            v.error("port", format!("{} is outside 1..=65535", self.port));
        }
        if let Some(Value::Known(host)) = &self.host {
            v.check("host", super::ssh::check_host(host.as_str()));
        }
        v.check("user", super::ssh::check_user(&self.user));
        if let Some(file) = &self.identity_file
            && file.display().to_string().contains(char::is_whitespace)
        {
            // Nix splits NIX_SSHOPTS, which carries it to nix-copy-closure's ssh, on whitespace.
            v.error("identity_file", format!("{} contains whitespace; use a path without any", file.display()));
        }
        for (i, check) in self.health.iter().enumerate() {
            match check {
                HealthCheck::Http { port, path } => {
                    if *port == 0 {
                        v.error(format!("health_checks[{i}].port"), "0 is outside 1..=65535");
                    }
                    v.check(format!("health_checks[{i}].http"), crate::aws::catalog::check_http_path(path));
                }
                HealthCheck::Command(argv) => {
                    if argv.first().is_none_or(String::is_empty) || argv.iter().any(|a| a.contains('\0')) {
                        v.error(
                            format!("health_checks[{i}].command"),
                            "a command is a non-empty argv without NUL bytes",
                        );
                    }
                }
            }
        }
        if self.connect_timeout.as_secs() == 0 {
            v.error("connect_timeout", "at least 1 s");
        }
        // The checks run one after the other, each until its deadline.
        let checks = u32::try_from(self.health.len().max(1)).unwrap_or(u32::MAX);
        let margin = self.connect_timeout.saturating_mul(2);
        if self.confirm_within < self.health_deadline.saturating_mul(checks).saturating_add(margin) {
            v.error(
                "confirm_within",
                format!(
                    "{} s is too short: the host would roll back while the deploy may still confirm; give it at least \
                     the health deadline ({} s) for each of the {checks} health check(s) plus two connect timeouts \
                     (the fresh login and the confirmation, {} s)",
                    self.confirm_within.as_secs(),
                    self.health_deadline.as_secs(),
                    margin.as_secs()
                ),
            );
        }
    }

    crate::aws::lifecycle_methods!();
}

impl Handle<Deployment> {
    /// The system running on the host after the deploy.
    pub fn current_system(&self) -> Output<StorePath> {
        self.attribute("current_system")
    }

    /// The system the host boots (its system profile): the deployed one, also when it runs only after a
    /// reboot (exit 100 of `switch-to-configuration`).
    pub fn boot_system(&self) -> Output<StorePath> {
        self.attribute("boot_system")
    }
}

/// The provider of [`Deployment`]s.
#[derive(Clone, Debug)]
pub struct Deployer {
    work_root: PathBuf,
    aws: Option<Arc<AwsContext>>,
}

impl Deployer {
    /// A deployer keeping each deploy's work directory (control socket, `known_hosts`, the private key copy)
    /// under `work_root`, removed when the deploy ends (keep it short: control socket paths are limited to
    /// about 100 bytes). Work directories of killed runs found there are cleaned by the next deploy.
    pub fn new(work_root: impl Into<PathBuf>) -> Self {
        Deployer { work_root: work_root.into(), aws: None }
    }

    /// Tags instances with the deployed toplevel through `aws`.
    pub fn with_aws(mut self, aws: Arc<AwsContext>) -> Self {
        self.aws = Some(aws);
        self
    }

    /// The connection settings of a deployment and its work directory (holding the private key copy).
    fn target(&self, address: &Address, inputs: &Attrs, outputs: &Attrs) -> Result<(Target, WorkDir)> {
        let get = |f: &str| inputs.get(f).and_then(Attr::as_str);
        let host = get("host").ok_or_else(|| Error::provider(address, "no host"))?;
        super::ssh::check_host(host)
            .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("{address}: field `host`: {e}")))?;
        let user = get("user").unwrap_or("root");
        super::ssh::check_user(user)
            .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("{address}: field `user`: {e}")))?;
        if self.work_root.display().to_string().contains(char::is_whitespace) {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "the temporary directory {} contains whitespace, which the SSH options Nix is given cannot \
                     carry: set TMPDIR to a path without any",
                    self.work_root.display()
                ),
            ));
        }
        let dir = WorkDir::create(&self.work_root)?;
        let identity = match (get("ssh_private_key"), get("identity_file")) {
            (Some(key), _) => dir.write_key(&usable_private_key(address, key)?)?,
            (None, Some(file)) => PathBuf::from(file),
            (None, None) => return Err(Error::provider(address, "no SSH private key")),
        };
        let host_key = match inputs.get("host_key").and_then(Attr::as_map) {
            Some(m) if m.contains_key("trust_on_first_use") => {
                match outputs.get("host_public_key").and_then(Attr::as_str) {
                    // Trusted on first use, pinned ever after.
                    Some(key) => HostKeyPolicy::Pinned(key.to_owned()),
                    None => HostKeyPolicy::TrustOnFirstUse,
                }
            }
            Some(m) => HostKeyPolicy::Pinned(
                m.get("pinned")
                    .and_then(Attr::as_str)
                    .ok_or_else(|| Error::provider(address, "no pinned host key"))?
                    .to_owned(),
            ),
            None => return Err(Error::provider(address, "no host key policy")),
        };
        let target = Target {
            host: host.to_owned(),
            port: inputs.get("port").and_then(Attr::as_int).and_then(|p| u16::try_from(p).ok()).unwrap_or(22),
            user: user.to_owned(),
            identity,
            host_key,
            known_hosts: dir.path().join("known_hosts"),
            connect_timeout: inputs
                .get("connect_timeout")
                .and_then(Attr::as_int)
                .and_then(|s| u64::try_from(s).ok())
                .map_or(super::ssh::CONNECT_TIMEOUT, Duration::from_secs),
        };
        Ok((target, dir))
    }

    async fn deploy(&self, ctx: &StepContext, prior: Option<&ResourceState>, inputs: &Attrs) -> Result<Observed> {
        let address = &ctx.address;
        let toplevel =
            inputs.get("toplevel").and_then(Attr::as_str).ok_or_else(|| Error::provider(address, "no toplevel"))?;
        // Known only now when it came from another resource: checked as at plan time.
        check_store_path(toplevel)
            .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("{address}: field `toplevel`: {e}")))?;
        let no_outputs = Attrs::new();
        let (target, dir) = self.target(address, inputs, prior.map_or(&no_outputs, |p| &p.outputs))?;
        let settings = run::Settings::from_inputs(inputs);
        ctx.progress(format!("{}: connecting", target.display()));
        let conn = target.connect(dir).await.map_err(|e| Error::provider(address, e))?;
        let result = run::Deploy { ctx, conn: &conn, toplevel, settings }.run().await;
        let host_public_key = std::fs::read_to_string(&target.known_hosts)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.split_once(' ')).map(|(_, k)| k.trim().to_owned()));
        conn.close().await;
        let done = result?;
        if let (Some(aws), Some(instance)) = (&self.aws, inputs.get("instance_id").and_then(Attr::as_str)) {
            let tag = aws_sdk_ec2::types::Tag::builder().key("paranix:toplevel").value(toplevel).build();
            aws.ec2
                .create_tags()
                .resources(instance)
                .tags(tag)
                .send()
                .await
                .map_err(crate::aws::context::aws_error(address, "CreateTags"))?;
        }
        ctx.progress(format!("{}: {}", target.display(), done.outcome));
        Ok(Observed {
            inputs: inputs.clone(),
            outputs: Attrs::from([
                ("boot_system".into(), done.boot_system.map_or(Attr::Null, Attr::Str)),
                ("current_system".into(), Attr::Str(done.current_system)),
                ("host_public_key".into(), host_public_key.map_or(Attr::Null, Attr::Str)),
            ]),
        })
    }

    /// What one host runs now, for refresh.
    async fn observe(&self, request: &ReadRequest<'_>) -> Result<Option<Observed>> {
        let address = request.address;
        // A host key pinned in the configuration wins over the recorded one: after a rotation, the new key is
        // what the host presents (the plan then shows the change of `host_key`).
        let mut reach = request.inputs.clone();
        if let Some(configured) = request.configured.and_then(|c| c.get("host_key"))
            && configured.as_map().and_then(|m| m.get("pinned")).and_then(Attr::as_str).is_some()
        {
            reach.insert("host_key".into(), configured.clone());
        }
        let (target, dir) = self.target(address, &reach, request.outputs)?;
        let conn = target.connect(dir).await.map_err(|e| Error::provider(address, e))?;
        let status = conn.run(&["/bin/sh", "-c", protocol::STATUS, "paranix-status"]).await;
        conn.close().await;
        let status = protocol::HostStatus::parse(&status?.stdout);
        let mut inputs = request.inputs.clone();
        let mut outputs = request.outputs.clone();
        // What the configuration asks for now (a failed deploy recorded nothing), else what was recorded.
        let desired = request
            .configured
            .and_then(|c| c.get("toplevel"))
            .and_then(Attr::as_str)
            .or_else(|| request.inputs.get("toplevel").and_then(Attr::as_str))
            .unwrap_or_default();
        if let Some(current) = &status.current {
            // What runs is what counts (an out-of-band switch is drift), with two exceptions that must show:
            // a deploy still waiting for its confirmation (the host reverts by itself), and a system installed
            // as the boot default by an exit 100 (the host runs it after a reboot).
            // A `switch` is only done when the host also boots it: a boot default that moved back (a failed
            // boot-loader write, an out-of-band `switch-to-configuration boot`) shows as drift too.
            let action = request.inputs.get("action").and_then(Attr::as_str).unwrap_or("switch");
            let observed = match status.pending.first() {
                Some(pending) => run::describe_pending(current, pending),
                None if status.reboot_required.as_deref() == Some(desired)
                    && status.profile.as_deref() == Some(desired) =>
                {
                    desired.to_owned()
                }
                None if action == "switch" && current == desired && status.profile.as_deref() != Some(desired) => {
                    format!("{current} (boots {})", status.profile.as_deref().unwrap_or("another system"))
                }
                None => current.clone(),
            };
            inputs.insert("toplevel".into(), Attr::Str(observed));
            outputs.insert("current_system".into(), Attr::Str(current.clone()));
        }
        if let Some(profile) = status.profile {
            outputs.insert("boot_system".into(), Attr::Str(profile));
        }
        Ok(Some(Observed { inputs, outputs }))
    }
}

/// The deploy key as ssh reads it: an unencrypted OpenSSH private key with LF line ends (a key pasted with
/// CRLF line ends is normalised). Errors say what is wrong without showing any of the key.
fn usable_private_key(address: &Address, key: &str) -> Result<String> {
    let key = key.replace("\r\n", "\n");
    let refuse = |why: &str| Error::new(ErrorKind::InvalidConfig, format!("{address}: field `ssh_private_key`: {why}"));
    match ssh_key::PrivateKey::from_openssh(key.trim()) {
        Ok(parsed) if parsed.is_encrypted() => Err(refuse(
            "the key is protected by a passphrase, which a deploy cannot type; use an unencrypted deploy key",
        )),
        Ok(_) => Ok(key),
        Err(_) if !key.contains("-----BEGIN") => {
            Err(refuse("not an OpenSSH private key (a file path? give the key's content, or use `identity_file`)"))
        }
        Err(_) => {
            Err(refuse("not a readable OpenSSH private key (`ssh-keygen -p -f FILE` rewrites one in that format)"))
        }
    }
}

#[async_trait]
impl Provider for Deployer {
    async fn read(&self, _kind: &str, requests: &[ReadRequest<'_>]) -> Result<Vec<Option<Observed>>> {
        futures::future::try_join_all(requests.iter().map(|r| self.observe(r))).await
    }

    async fn create(&self, ctx: &StepContext, inputs: &Attrs) -> Result<Observed> {
        self.deploy(ctx, None, inputs).await
    }

    async fn update(&self, ctx: &StepContext, prior: &ResourceState, inputs: &Attrs) -> Result<Observed> {
        self.deploy(ctx, Some(prior), inputs).await
    }

    async fn delete(&self, _ctx: &StepContext, _prior: &ResourceState) -> Result<()> {
        // Forgetting a deployment leaves the host running what it runs.
        Ok(())
    }
}
