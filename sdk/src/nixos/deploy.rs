//! [`Deployment`]: a NixOS system deployed to a host over SSH, as a planned resource whose identity is the
//! system's store path (the "toplevel"), and [`Deployer`], its provider.
//!
//! The steps, per host, each an argv over one multiplexed SSH connection:
//!
//! 1. connect, verifying the host key (pinned, or trusted on first use when asked) before anything else;
//! 2. read `/run/current-system`; a host already running the toplevel is reported unchanged;
//! 3. copy the closure with `nix-copy-closure` through the same connection (only missing paths travel);
//! 4. arm a watchdog on the host (a detached process, no SSH needed) that rolls back to the previous generation
//!    unless the deploy is confirmed in time;
//! 5. `nix-env -p /nix/var/nix/profiles/system --set <toplevel>`;
//! 6. `switch-to-configuration <action>` detached from the SSH session (`systemd-run` when the host runs
//!    systemd, `setsid` otherwise), so an sshd restart cannot kill it half-way; its exit status is read back;
//! 7. open a fresh, non-multiplexed connection (a new login must still work);
//! 8. run the health checks (HTTP from the deployer, commands on the host) with retries until a deadline;
//! 9. confirm, which disarms the watchdog.
//!
//! A failed activation or health check rolls back at once and fails the step ("rolled back", non-zero exit);
//! a lost connection leaves the rollback to the watchdog. `switch-to-configuration` exit 4 (activated, some
//! units failed) is treated as a failure and rolled back; exit 100 (the new system needs a reboot) is accepted
//! and reported.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::ssh::{Connection, HostKeyPolicy, Target, fingerprint};
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
/// Where paranix keeps its markers on the host (tmpfs: gone after a reboot, as a pending deploy should be).
const MARKERS: &str = "/run/paranix";

/// Rolls back to `$3` unless `/run/paranix/confirmed-$1` appears within `$2` seconds. A constant script:
/// every value arrives as an argument.
const WATCHDOG: &str = r#"exec </dev/null >/dev/null 2>&1
id=$1 timeout=$2 prev=$3 profile=$4
mkdir -p /run/paranix
sleep "$timeout"
[ -e "/run/paranix/confirmed-$id" ] && exit 0
echo "$prev" > "/run/paranix/rolled-back-$id"
nix-env -p "$profile" --set "$prev" && "$prev/bin/switch-to-configuration" switch
"#;

/// Runs `$2/bin/switch-to-configuration $3` and records its exit status for deploy `$1`.
const SWITCH: &str = r#"mkdir -p /run/paranix
exec </dev/null >"/run/paranix/switch-$1.log" 2>&1
"$2/bin/switch-to-configuration" "$3"
echo $? > "/run/paranix/switch-$1.status"
"#;

/// Rolls back now: the previous generation `$2` becomes current again, and the watchdog of deploy `$1` is
/// disarmed so it does not roll back twice.
const ROLLBACK: &str = r#"mkdir -p /run/paranix
touch "/run/paranix/confirmed-$1"
nix-env -p "$3" --set "$2" && "$2/bin/switch-to-configuration" switch
"#;

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
    instance: Option<Value<InstanceId>>,
    lifecycle: Lifecycle,
}

static DEPLOYMENT_FIELDS: [Field; 12] = [
    Field::new("action"),
    Field::new("confirm_within"),
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

static DEPLOYMENT_OUTPUTS: [OutputField; 2] = [OutputField::new("current_system"), OutputField::new("host_public_key")];

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

    /// How long the host waits for the confirmation before it rolls back by itself (5 minutes by default).
    pub fn confirm_within(mut self, within: Duration) -> Self {
        self.confirm_within = within;
        self
    }

    /// Records the deployed toplevel as the tag `paranix:toplevel` of this instance.
    pub fn instance(mut self, instance: impl Into<Value<InstanceId>>) -> Self {
        self.instance = Some(instance.into());
        self
    }
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
            ("confirm_within".into(), Attr::Int(self.confirm_within.as_secs() as i64)),
            ("health_checks".into(), Attr::List(self.health.iter().map(HealthCheck::to_attr).collect())),
            ("health_deadline".into(), Attr::Int(self.health_deadline.as_secs() as i64)),
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
        if let Some(Value::Known(path)) = &self.toplevel
            && !path.as_str().starts_with("/nix/store/")
        {
            v.error("toplevel", format!("{:?} is not a store path", path.as_str()));
        }
        if !ACTIONS.contains(&self.action.as_str()) {
            v.error("action", format!("{:?} is not one of {}", self.action, ACTIONS.join(", ")));
        }
        if !(1..=65_535).contains(&self.port) {
            v.error("port", format!("{} is outside 1..=65535", self.port));
        }
        if let Some(Value::Known(host)) = &self.host
            && host.as_str() == "localhost"
        {
            v.error("host", "write 127.0.0.1: Nix treats `localhost` as \"no SSH\" and would copy to this machine");
        }
    }

    crate::aws::lifecycle_methods!();
}

impl Handle<Deployment> {
    /// The system running on the host after the deploy.
    pub fn current_system(&self) -> Output<StorePath> {
        self.attribute("current_system")
    }
}

/// The provider of [`Deployment`]s.
#[derive(Clone, Debug)]
pub struct Deployer {
    work_dir: PathBuf,
    aws: Option<Arc<AwsContext>>,
}

impl Deployer {
    /// A deployer keeping SSH control sockets, known-hosts files and temporary keys under `work_dir`
    /// (keep it short: control socket paths are limited to about 100 bytes).
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        Deployer { work_dir: work_dir.into(), aws: None }
    }

    /// Tags instances with the deployed toplevel through `aws`.
    pub fn with_aws(mut self, aws: Arc<AwsContext>) -> Self {
        self.aws = Some(aws);
        self
    }

    /// The connection settings of a deployment, writing its private key (0600) into a per-address directory.
    fn target(&self, address: &Address, inputs: &Attrs, outputs: &Attrs) -> Result<(Target, PathBuf)> {
        let host = inputs.get("host").and_then(Attr::as_str).unwrap_or_default();
        let port = inputs.get("port").and_then(Attr::as_int).unwrap_or(22);
        let dir = self.work_dir.join(short_id(&format!("{address} {host} {port}")));
        create_private_dir(&dir)?;
        let get = |f: &str| inputs.get(f).and_then(Attr::as_str);
        let identity = match (get("ssh_private_key"), get("identity_file")) {
            (Some(key), _) => {
                let path = dir.join("id");
                write_private(&path, key.trim_end().to_owned() + "\n")?;
                path
            }
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
            host: get("host").ok_or_else(|| Error::provider(address, "no host"))?.to_owned(),
            port: inputs.get("port").and_then(Attr::as_int).and_then(|p| u16::try_from(p).ok()).unwrap_or(22),
            user: get("user").unwrap_or("root").to_owned(),
            identity,
            host_key,
            known_hosts: dir.join("known_hosts"),
        };
        Ok((target, dir))
    }

    async fn deploy(&self, ctx: &StepContext, prior: Option<&ResourceState>, inputs: &Attrs) -> Result<Observed> {
        let address = &ctx.address;
        let no_outputs = Attrs::new();
        let (target, dir) = self.target(address, inputs, prior.map_or(&no_outputs, |p| &p.outputs))?;
        let toplevel =
            inputs.get("toplevel").and_then(Attr::as_str).ok_or_else(|| Error::provider(address, "no toplevel"))?;
        let action = inputs.get("action").and_then(Attr::as_str).unwrap_or("switch");
        let phase = |p: &str| ctx.progress(format!("{}: {p}", target.display()));

        phase("connecting");
        let conn = match target.connect(&dir).await {
            Ok(conn) => conn,
            Err(e) => {
                let _ = std::fs::remove_file(dir.join("id"));
                return Err(Error::provider(address, e));
            }
        };
        let result = self.deploy_over(ctx, &target, &conn, toplevel, action, inputs, &phase).await;
        conn.close().await;
        // The private key copy lives only as long as the connection needs it.
        let _ = std::fs::remove_file(dir.join("id"));
        let host_public_key = std::fs::read_to_string(&target.known_hosts)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.split_once(' ')).map(|(_, k)| k.trim().to_owned()));
        let outcome = result?;
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
        phase(&outcome);
        Ok(Observed {
            inputs: inputs.clone(),
            outputs: Attrs::from([
                ("current_system".into(), Attr::str(toplevel)),
                ("host_public_key".into(), host_public_key.map_or(Attr::Null, Attr::Str)),
            ]),
        })
    }

    #[allow(clippy::too_many_arguments, reason = "one deploy's context, kept flat for reading")]
    async fn deploy_over(
        &self,
        ctx: &StepContext,
        target: &Target,
        conn: &Connection,
        toplevel: &str,
        action: &str,
        inputs: &Attrs,
        phase: &(dyn Fn(&str) + Sync),
    ) -> Result<String> {
        let address = &ctx.address;
        let fail = |message: String| Error::provider(address, format!("{}: {message}", target.display()));
        let current = conn.run(&["readlink", "-f", "/run/current-system"]).await?;
        let current = current.ok().then_some(current.stdout).filter(|s| s.starts_with("/nix/store/"));
        let profile = conn.run(&["readlink", "-f", SYSTEM_PROFILE]).await?;
        let profile = profile.ok().then_some(profile.stdout).filter(|s| s.starts_with("/nix/store/"));
        if current.as_deref() == Some(toplevel) && profile.as_deref() == Some(toplevel) {
            return Ok("unchanged: the host already runs this system".into());
        }

        // Copy what the host lacks, through the open connection.
        let closure = local(&["nix-store", "--query", "--requisites", toplevel]).await.map_err(&fail)?;
        let paths: Vec<&str> = closure.lines().collect();
        let mut check = vec!["nix-store", "--check-validity", "--print-invalid"];
        check.extend(&paths);
        let missing = conn.run(&check).await?;
        let missing: Vec<&str> = missing.stdout.lines().filter(|l| l.starts_with("/nix/store/")).collect();
        phase(&format!("copying {} of {} paths", missing.len(), paths.len()));
        if !missing.is_empty() {
            let opts =
                format!("-o ControlPath={} -o ControlMaster=no -p {}", conn.control_socket().display(), target.port);
            let destination = format!("{}@{}", target.user, target.host);
            let out = tokio::process::Command::new("nix-copy-closure")
                .args(["--to", &destination, toplevel])
                .env("NIX_SSHOPTS", opts)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output()
                .await
                .map_err(|e| fail(format!("cannot run nix-copy-closure: {e}")))?;
            if !out.status.success() {
                return Err(fail(format!(
                    "copying the closure failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        if action == "dry-activate" {
            let ran = conn.run(&[&format!("{toplevel}/bin/switch-to-configuration"), "dry-activate"]).await?;
            return if ran.ok() {
                Ok("dry-activated".into())
            } else {
                Err(fail(format!("dry-activate failed: {}", ran.stderr)))
            };
        }

        // Arm the host's own rollback before changing anything.
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let within = inputs.get("confirm_within").and_then(Attr::as_int).unwrap_or(300).to_string();
        let previous = current.clone().or(profile.clone());
        if let Some(prev) = &previous {
            let armed = conn
                .run(&[
                    "setsid",
                    "-f",
                    "/bin/sh",
                    "-c",
                    WATCHDOG,
                    "paranix-watchdog",
                    &id,
                    &within,
                    prev,
                    SYSTEM_PROFILE,
                ])
                .await?;
            if !armed.ok() {
                return Err(fail(format!("cannot arm the rollback watchdog: {}", armed.stderr)));
            }
        }
        let set = conn.run(&["nix-env", "-p", SYSTEM_PROFILE, "--set", toplevel]).await?;
        if !set.ok() {
            return Err(self
                .roll_back(
                    target,
                    &id,
                    previous.as_deref(),
                    &format!("setting the system profile failed: {}", set.stderr),
                )
                .await);
        }

        phase(&format!("activating ({action})"));
        let systemd = conn.run(&["test", "-d", "/run/systemd/system"]).await?.ok();
        let launcher: &[&str] = if systemd {
            &["systemd-run", "--quiet", "--collect", "--unit", &format!("paranix-switch-{id}"), "/bin/sh", "-c", SWITCH]
        } else {
            &["setsid", "-f", "/bin/sh", "-c", SWITCH]
        };
        let mut argv: Vec<&str> = launcher.to_vec();
        argv.extend(["paranix-switch", &id, toplevel, action]);
        let launched = conn.run(&argv).await?;
        if !launched.ok() {
            return Err(self
                .roll_back(
                    target,
                    &id,
                    previous.as_deref(),
                    &format!("cannot start the activation: {}", launched.stderr),
                )
                .await);
        }
        let status = match self.switch_status(target, conn, &id).await {
            Some(status) => status,
            None => {
                return Err(fail(format!(
                    "rolled back: the host stopped answering during activation; it returns to {} by itself within {within}s",
                    previous.as_deref().unwrap_or("its previous system")
                )));
            }
        };
        let mut note = String::new();
        match status {
            0 => {}
            100 => note = " (the new system needs a reboot to take full effect)".into(),
            4 => {
                return Err(self
                    .roll_back(target, &id, previous.as_deref(), "activation finished but some units failed (exit 4)")
                    .await);
            }
            code => {
                return Err(self
                    .roll_back(target, &id, previous.as_deref(), &format!("activation failed (exit {code})"))
                    .await);
            }
        }

        // A new login must still work: the confirmation never goes through the old connection.
        phase("confirming over a fresh connection");
        match target.fresh_command(&["true"]).await {
            Ok(out) if out.status.success() => {}
            _ => {
                return Err(fail(format!(
                    "rolled back: a fresh SSH connection after activation failed; the host returns to {} by itself within {within}s",
                    previous.as_deref().unwrap_or("its previous system")
                )));
            }
        }
        let checks: Vec<HealthCheck> = inputs
            .get("health_checks")
            .and_then(Attr::as_list)
            .unwrap_or_default()
            .iter()
            .filter_map(HealthCheck::from_attr)
            .collect();
        let deadline =
            Duration::from_secs(inputs.get("health_deadline").and_then(Attr::as_int).unwrap_or(60).max(0) as u64);
        for check in &checks {
            phase(&format!("checking {}", describe(check)));
            if let Err(why) = run_check(target, check, deadline).await {
                return Err(self
                    .roll_back(
                        target,
                        &id,
                        previous.as_deref(),
                        &format!("health check {} failed: {why}", describe(check)),
                    )
                    .await);
            }
        }
        let mark = format!("{MARKERS}/confirmed-{id}");
        match target.fresh_command(&["touch", &mark]).await {
            Ok(out) if out.status.success() => Ok(format!("activated {toplevel}{note}")),
            _ => Err(fail(format!(
                "rolled back: the confirmation could not be written; the host returns to {} by itself within {within}s",
                previous.as_deref().unwrap_or("its previous system")
            ))),
        }
    }

    /// Waits for the detached activation's exit status; `None` when the host cannot be reached.
    async fn switch_status(&self, target: &Target, conn: &Connection, id: &str) -> Option<i32> {
        let status_file = format!("{MARKERS}/switch-{id}.status");
        // Activation restarts services (sshd among them); it usually takes seconds, 10 minutes is generous.
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline {
            let read = if conn.alive().await {
                conn.run(&["cat", &status_file]).await.ok().filter(super::ssh::Ran::ok).map(|r| r.stdout)
            } else {
                match target.fresh_command(&["cat", &status_file]).await {
                    Ok(out) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
                    Ok(_) => None,
                    Err(_) => return None,
                }
            };
            if let Some(code) = read.and_then(|s| s.trim().parse().ok()) {
                return Some(code);
            }
            if !conn.alive().await && target.fresh_command(&["true"]).await.map(|o| !o.status.success()).unwrap_or(true)
            {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        None
    }

    /// Rolls back now over a fresh connection; returns the error to report.
    async fn roll_back(&self, target: &Target, id: &str, previous: Option<&str>, why: &str) -> Error {
        let Some(prev) = previous else {
            return Error::new(
                ErrorKind::Provider,
                format!("{}: {why}; there is no previous generation to roll back to", target.display()),
            );
        };
        match target.fresh_command(&["/bin/sh", "-c", ROLLBACK, "paranix-rollback", id, prev, SYSTEM_PROFILE]).await {
            Ok(out) if out.status.success() => {
                Error::new(ErrorKind::Provider, format!("{}: rolled back to {prev}: {why}", target.display()))
            }
            _ => Error::new(
                ErrorKind::Provider,
                format!("{}: {why}; rolling back now failed, the host returns to {prev} by itself", target.display()),
            ),
        }
    }
}

fn describe(check: &HealthCheck) -> String {
    match check {
        HealthCheck::Http { port, path } => format!("GET :{port}{path}"),
        HealthCheck::Command(argv) => format!("`{}`", argv.join(" ")),
    }
}

/// Retries `check` every second until it passes or `deadline` passes; returns the last failure.
async fn run_check(target: &Target, check: &HealthCheck, deadline: Duration) -> std::result::Result<(), String> {
    let until = Instant::now() + deadline;
    loop {
        let result = match check {
            HealthCheck::Http { port, path } => http_get(&target.host, *port, path).await,
            HealthCheck::Command(argv) => {
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                match target.fresh_command(&argv).await {
                    Ok(out) if out.status.success() => Ok(()),
                    Ok(out) => {
                        Err(format!("exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr).trim()))
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        match result {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= until => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// A minimal HTTP/1.1 GET: the status must be 2xx.
async fn http_get(host: &str, port: u16, path: &str) -> std::result::Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connect = tokio::net::TcpStream::connect((host, port));
    let mut stream = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut head))
        .await
        .map_err(|_| "no answer".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = String::from_utf8_lossy(&head[9..12]).to_string();
    if status.starts_with('2') { Ok(()) } else { Err(format!("HTTP {status}")) }
}

/// Runs a local command, returning stdout.
async fn local(argv: &[&str]) -> std::result::Result<String, String> {
    let out = tokio::process::Command::new(argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    if !out.status.success() {
        return Err(format!("{} failed: {}", argv.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn short_id(seed: &str) -> String {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(seed.as_bytes()).iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot create {}: {e}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot restrict {}: {e}", dir.display())))
}

fn write_private(path: &Path, text: String) -> Result<()> {
    crate::state::write_private_file(path, text.as_bytes())
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot write {}: {e}", path.display())))
}

#[async_trait]
impl Provider for Deployer {
    async fn read(&self, _kind: &str, requests: &[ReadRequest<'_>]) -> Result<Vec<Option<Observed>>> {
        // What runs on each host now: an out-of-band switch shows as drift of `toplevel`.
        futures::future::try_join_all(requests.iter().map(|r| async move {
            let (target, dir) = self.target(r.address, r.inputs, r.outputs)?;
            let conn = target.connect(&dir).await.map_err(|e| Error::provider(r.address, e))?;
            let current = conn.run(&["readlink", "-f", "/run/current-system"]).await;
            conn.close().await;
            let _ = std::fs::remove_file(dir.join("id"));
            let mut inputs = r.inputs.clone();
            if let Ok(current) = current
                && current.ok()
            {
                inputs.insert("toplevel".into(), Attr::Str(current.stdout.clone()));
            }
            Ok(Some(Observed { inputs, outputs: r.outputs.clone() }))
        }))
        .await
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
