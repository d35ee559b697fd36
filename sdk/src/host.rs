//! Hosts: an EC2 instance and the NixOS system deployed to it, declared as one item.
//!
//! Most programs declare hosts with the [`#[host]`](macro@crate::host) attribute, which checks the instance
//! type, root volume, configuration file, health checks and NixOS options at compile time and implements
//! [`Host`] for a struct. The struct's fields are the references the host needs from other resources
//! (`ami`, `key_name`, `security_groups`, optionally `private_key` and `host_key`), each a typed
//! [`Output<T>`](crate::value::Output), so wiring a bucket ARN where an AMI id belongs does not compile.
//!
//! [`Stack::add_host`] then declares three resources under the host's name:
//!
//! - `aws_instance.<name>`: the instance (encrypted root volume, IMDSv2, a `Name` tag);
//! - `nixos_system.<name>`: the host's NixOS toplevel, built from its configuration plus the options set
//!   from Rust (passed to Nix as JSON data);
//! - `nixos_deployment.<name>`: that toplevel deployed to the instance over SSH, host key pinned, health
//!   checked, rolled back on failure.
//!
//! Who may log in: the deploy logs in as root with the key pair behind `key_name` (its private half from
//! `private_key`), and [`Stack::add_host`] admits exactly that key pair's public half for root on the host's
//! system (the NixOS option `paranix.rootKeys`, plus [`HostSpec::root_key`]s). The image the instance boots admits
//! the EC2 launch key instead, until the first deploy (`nix/README.md`, "Bootstrap"). A host whose deploy key
//! cannot be known (a key pair made elsewhere, named by a literal) must name it
//! ([`HostSpec::deploy_public_key`]): the stack refuses it before any request otherwise, since its system would
//! lock the deploy out.
//!
//! What the machine can hold: on instance types under 2 GiB of memory the host's system is told so
//! (`paranix.host.memoryMiB`), which turns the ClamAV daemon off by default; turning it on there is refused.
//!
//! [`HostSpec`] is the same thing without the macro (every builder method is public), and the place for
//! what varies per use of a host: another name, an SSH address override for bastions, VPNs and tests
//! ([`HostSpec::ssh_address`]), or no deployment at all for emulators that boot nothing
//! ([`HostSpec::infrastructure_only`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::address::Address;
use crate::attr::{Attr, Part};
use crate::ec2;
use crate::nixos::{Deployment, HealthCheck, System};
use crate::resource::Handle;
use crate::stack::Stack;
use crate::value::{
    HostAddress, ImageId, InstanceId, IntoAttr, KeyName, Output, PublicKey, SecurityGroupId, StorePath, Value,
};

/// A type that describes a host: implemented by [`#[host]`](macro@crate::host) for a struct, or by hand.
pub trait Host: Sized {
    /// The host's default logical name (the `name = ...` argument, else the struct's name in snake case).
    const NAME: &'static str;

    /// The host's specification, ready for [`Stack::add_host`] (or to adjust first).
    fn spec(self) -> HostSpec;
}

/// How a deploy verifies the host's SSH key.
#[derive(Clone, Debug)]
pub enum HostKeyPolicy {
    /// The key NixOS prints on the instance's serial console at first boot, read through the EC2 API
    /// (the default: no trust on first use, no out-of-band step).
    Console,
    /// Trust the key the host presents at the first deploy, then pin it. Asked for explicitly, never the
    /// default.
    TrustOnFirstUse,
    /// A key known in advance (a literal, or an output of another resource).
    Pinned(Value<PublicKey>),
}

/// An output of the host's own instance, usable as a NixOS option value (`nixos(x = public_ip)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceOutput {
    /// `instance.public_ip()`.
    PublicIp,
    /// `instance.private_ip()`.
    PrivateIp,
    /// `instance.public_dns()`.
    PublicDns,
    /// `instance.id()`.
    Id,
}

/// A NixOS option value: data from Rust, or an output of the host's own instance.
#[derive(Clone, Debug)]
enum OptionValue {
    Data(Attr),
    Instance(InstanceOutput),
}

/// A value that can be set as a NixOS option: literals (`&str`, `String`, integers, `bool`), typed
/// outputs and values of other resources, and lists of these. Turned into JSON data, never Nix source.
pub trait OptionData {
    /// The value as data.
    fn to_option_attr(&self) -> Attr;
}

impl<T: IntoAttr> OptionData for Output<T> {
    fn to_option_attr(&self) -> Attr {
        Value::Output(self.clone()).to_attr()
    }
}

impl<T: IntoAttr> OptionData for Value<T> {
    fn to_option_attr(&self) -> Attr {
        self.to_attr()
    }
}

impl OptionData for &str {
    fn to_option_attr(&self) -> Attr {
        Attr::str(*self)
    }
}

impl OptionData for String {
    fn to_option_attr(&self) -> Attr {
        Attr::str(self)
    }
}

impl OptionData for bool {
    fn to_option_attr(&self) -> Attr {
        Attr::Bool(*self)
    }
}

macro_rules! integer_option_data {
    ($($t:ty),*) => {$(
        impl OptionData for $t {
            fn to_option_attr(&self) -> Attr {
                Attr::Int(i64::from(*self))
            }
        }
    )*};
}

integer_option_data!(i8, i16, i32, i64, u8, u16, u32);

impl<T: OptionData> OptionData for Vec<T> {
    fn to_option_attr(&self) -> Attr {
        Attr::List(self.iter().map(OptionData::to_option_attr).collect())
    }
}

/// Where and how a deploy reaches the host, when not at the instance's public address on port 22.
#[derive(Clone, Debug, Default)]
struct SshOverride {
    address: Option<Value<HostAddress>>,
    port: Option<u16>,
    user: Option<String>,
    host_key: Option<Value<PublicKey>>,
    identity_file: Option<PathBuf>,
    forwarded: Vec<(u16, u16)>,
}

/// A host's specification: the instance, its NixOS system and the deployment. Built by
/// [`#[host]`](macro@crate::host) (see its documentation for the equivalent hand-written code) and added to a
/// stack with [`Stack::add_host`].
#[derive(Clone, Debug)]
pub struct HostSpec {
    name: String,
    configuration: PathBuf,
    host_nix: PathBuf,
    system: Option<String>,
    instance_type: String,
    root_volume: (i64, String),
    ami: Option<Value<ImageId>>,
    key_name: Option<Value<KeyName>>,
    security_groups: Vec<Value<SecurityGroupId>>,
    private_key: Option<crate::value::Redacted<Value<String>>>,
    deploy_public_key: Option<Value<PublicKey>>,
    root_keys: Vec<Value<PublicKey>>,
    host_key: HostKeyPolicy,
    health_checks: Vec<HealthCheck>,
    health_deadline: Option<Duration>,
    confirm_within: Option<Duration>,
    connect_timeout: Option<Duration>,
    options: Vec<(Vec<String>, OptionValue)>,
    tags: Vec<(String, String)>,
    ssh: SshOverride,
    deploy: bool,
}

impl HostSpec {
    /// A host named `name` running the NixOS configuration at `configuration` (relative to the project root,
    /// like [`System::new`](crate::nixos::System::new)): a t3.micro with an 8 GiB gp3 root volume, host key
    /// from the console.
    pub fn new(name: impl Into<String>, configuration: impl Into<PathBuf>) -> Self {
        HostSpec {
            name: name.into(),
            configuration: configuration.into(),
            host_nix: PathBuf::from("nix/host.nix"),
            system: None,
            instance_type: "t3.micro".into(),
            root_volume: (8, "gp3".into()),
            ami: None,
            key_name: None,
            security_groups: Vec::new(),
            private_key: None,
            deploy_public_key: None,
            root_keys: Vec::new(),
            host_key: HostKeyPolicy::Console,
            health_checks: Vec::new(),
            health_deadline: None,
            confirm_within: None,
            connect_timeout: None,
            options: Vec::new(),
            tags: Vec::new(),
            ssh: SshOverride::default(),
            deploy: true,
        }
    }

    /// The host's logical name: the last part of its three resources' addresses.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The logical name.
    pub fn host_name(&self) -> &str {
        &self.name
    }

    /// Another NixOS configuration file for the host (relative to the project root): a staging variant, say.
    pub fn configuration(mut self, path: impl Into<PathBuf>) -> Self {
        self.configuration = path.into();
        self
    }

    /// The Nix file that evaluates the host (`nix/host.nix` by default).
    pub fn host_nix(mut self, path: impl Into<PathBuf>) -> Self {
        self.host_nix = path.into();
        self
    }

    /// The Nix system (by default derived from the instance type: `aarch64-linux` for Graviton families).
    pub fn system(mut self, system: impl Into<String>) -> Self {
        self.system = Some(system.into());
        self
    }

    /// The EC2 instance type.
    pub fn instance_type(mut self, instance_type: impl Into<String>) -> Self {
        self.instance_type = instance_type.into();
        self
    }

    /// The root volume: size in GiB and EBS type (always encrypted).
    pub fn root_volume(mut self, size_gib: i64, volume_type: impl Into<String>) -> Self {
        self.root_volume = (size_gib, volume_type.into());
        self
    }

    /// The AMI the instance boots.
    pub fn ami(mut self, ami: impl Into<Value<ImageId>>) -> Self {
        self.ami = Some(ami.into());
        self
    }

    /// The EC2 key pair installed for the first login.
    pub fn key_name(mut self, key: impl Into<Value<KeyName>>) -> Self {
        self.key_name = Some(key.into());
        self
    }

    /// Adds a security group.
    pub fn security_group(mut self, group: impl Into<Value<SecurityGroupId>>) -> Self {
        self.security_groups.push(group.into());
        self
    }

    /// The SSH private key deploys log in with (sensitive: never shown, never logged), e.g. a generated key
    /// pair's `private_key()`. Without one, deploys use the SSH agent and `~/.ssh`.
    pub fn private_key(mut self, key: impl Into<Value<String>>) -> Self {
        self.private_key = Some(crate::value::Redacted(key.into()));
        self
    }

    /// The public half of the deploy login's key, admitted for root on the host's NixOS system
    /// (`paranix.rootKeys`). Needed only when it cannot be found by itself: when `key_name` is a managed key
    /// pair's `key_name()`, that pair's `public_key()` is used.
    pub fn deploy_public_key(mut self, key: impl Into<Value<PublicKey>>) -> Self {
        self.deploy_public_key = Some(key.into());
        self
    }

    /// Admits one more SSH key for root on the host's NixOS system (`paranix.rootKeys`), besides the deploy
    /// key: a break-glass key, say. Staff accounts belong in `paranix.users` instead.
    pub fn root_key(mut self, key: impl Into<Value<PublicKey>>) -> Self {
        self.root_keys.push(key.into());
        self
    }

    /// How the host's SSH key is verified ([`HostKeyPolicy::Console`] by default).
    pub fn host_key(mut self, policy: HostKeyPolicy) -> Self {
        self.host_key = policy;
        self
    }

    /// Adds a health check run after activation; the deploy is confirmed only when all pass.
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health_checks.push(check);
        self
    }

    /// How long health checks may take to pass (the deployment's default otherwise).
    pub fn health_deadline(mut self, deadline: Duration) -> Self {
        self.health_deadline = Some(deadline);
        self
    }

    /// How long the host waits for the deployer's confirmation, counted from the end of activation, before
    /// rolling itself back (see [`Deployment::confirm_within`]).
    pub fn confirm_within(mut self, within: Duration) -> Self {
        self.confirm_within = Some(within);
        self
    }

    /// How long one SSH connection may take to be established (see [`Deployment::connect_timeout`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Sets the NixOS option at `path` (segment by segment) to data from Rust. See
    /// [`System::option_at`](crate::nixos::System::option_at).
    pub fn option(mut self, path: &[&str], value: impl OptionData) -> Self {
        self.options.push((segments(path), OptionValue::Data(value.to_option_attr())));
        self
    }

    /// Sets the NixOS option at `path` to an output of the host's own instance (its public address, say).
    pub fn option_from_instance(mut self, path: &[&str], output: InstanceOutput) -> Self {
        self.options.push((segments(path), OptionValue::Instance(output)));
        self
    }

    /// Adds a tag to the instance (it is also tagged `Name = <name>`).
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// Deploys to `address` instead of the instance's public IP: a bastion's forwarded address, a VPN or
    /// tailscale address, a test target. HTTP health checks go there too.
    pub fn ssh_address(mut self, address: impl Into<Value<HostAddress>>) -> Self {
        self.ssh.address = Some(address.into());
        self
    }

    /// Deploys over SSH port `port` instead of 22.
    pub fn ssh_port(mut self, port: u16) -> Self {
        self.ssh.port = Some(port);
        self
    }

    /// Logs in as `user` instead of root: the deploy runs its root steps with `sudo -n`, and the host's system
    /// gets `user` as its deploy account (`paranix.deployUser`: the deploy key, wheel, Nix `trusted-users`),
    /// while root gets no key (unless [`HostSpec::root_key`]). The machine must already have that account when
    /// the first deploy logs in: the image admits root only, so declare `paranix.deployUser` in the image's
    /// configuration too (with a key you have), or deploy as root first.
    pub fn ssh_user(mut self, user: impl Into<String>) -> Self {
        self.ssh.user = Some(user.into());
        self
    }

    /// Pins this host key instead of the one the host policy gives (the key of whatever answers at the
    /// overridden address).
    pub fn ssh_host_key(mut self, key: impl Into<Value<PublicKey>>) -> Self {
        self.ssh.host_key = Some(key.into());
        self
    }

    /// Logs in with the private key in this file instead of [`HostSpec::private_key`].
    pub fn ssh_identity_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ssh.identity_file = Some(path.into());
        self
    }

    /// HTTP health checks of port `remote` connect to port `local` of the (overridden) address instead: a
    /// port forward or SSH tunnel in front of the host.
    pub fn forward_port(mut self, remote: u16, local: u16) -> Self {
        self.ssh.forwarded.push((remote, local));
        self
    }

    /// Declares the instance only, no NixOS system and no deployment: for emulators that boot nothing, or
    /// to create machines before their first deploy. The host's [`HostHandle::toplevel`] then refers to
    /// an undeclared resource, which the plan reports if anything uses it.
    pub fn infrastructure_only(mut self) -> Self {
        self.deploy = false;
        self
    }
}

fn segments(path: &[&str]) -> Vec<String> {
    path.iter().map(|s| (*s).to_owned()).collect()
}

impl<H: Host> From<H> for HostSpec {
    fn from(host: H) -> HostSpec {
        host.spec()
    }
}

/// A host declared in a stack: typed handles to its instance, system and deployment.
#[derive(Clone, Debug)]
pub struct HostHandle {
    instance: Handle<ec2::Instance>,
    system: Handle<System>,
    deployment: Handle<Deployment>,
}

impl HostHandle {
    /// The instance's id.
    pub fn instance_id(&self) -> Output<InstanceId> {
        self.instance.id()
    }

    /// The instance's public IPv4 address.
    pub fn public_ip(&self) -> Output<HostAddress> {
        self.instance.public_ip()
    }

    /// The instance's private IPv4 address.
    pub fn private_ip(&self) -> Output<HostAddress> {
        self.instance.private_ip()
    }

    /// The instance's public DNS name.
    pub fn public_dns(&self) -> Output<HostAddress> {
        self.instance.public_dns()
    }

    /// The store path of the host's NixOS system (known at plan time once its configuration's values are).
    pub fn toplevel(&self) -> Output<StorePath> {
        self.system.toplevel()
    }

    /// The system running on the host, as the last deploy (or refresh) found it.
    pub fn current_system(&self) -> Output<StorePath> {
        self.deployment.current_system()
    }

    /// The instance's resource.
    pub fn instance(&self) -> &Handle<ec2::Instance> {
        &self.instance
    }

    /// The NixOS system's resource.
    pub fn system(&self) -> &Handle<System> {
        &self.system
    }

    /// The deployment's resource.
    pub fn deployment(&self) -> &Handle<Deployment> {
        &self.deployment
    }
}

/// The option that turns the ClamAV daemon on (common/default.nix).
const ANTIVIRUS_OPTION: [&str; 3] = ["paranix", "antivirus", "enable"];

/// The public key of the key pair behind `key_name`, when it is a managed key pair's `key_name()`.
fn key_pair_public_key(key_name: Option<&Value<KeyName>>) -> Option<Value<PublicKey>> {
    let Some(Value::Output(output)) = key_name else { return None };
    match output.expr().parts() {
        [Part::Ref(reference)]
            if reference.address.kind() == ec2::KEY_PAIR.kind && reference.attribute == "key_name" =>
        {
            Some(ec2::key_pair_public_key(&reference.address).into())
        }
        _ => None,
    }
}

impl Stack {
    /// The options paranix sets on every host's system: who may log in as root, and what the machine can
    /// hold. Problems are recorded against the system's address.
    fn host_options(&mut self, spec: &HostSpec, address: &Address, mut system: System) -> System {
        // Root's keys on the deployed system: the deploy key (when the deploy logs in as root) and the extra
        // keys declared here, nothing else: common/default.nix writes `paranix.rootKeys` to
        // /etc/ssh/authorized_keys.d/root and stops reading ~/.ssh/authorized_keys once deployed. (The image
        // admits the EC2 launch key instead, until the first deploy: nix/README.md, "Bootstrap".)
        // A non-root deploy user gets the deploy key instead (`paranix.deployUser`: wheel, Nix trusted-users), and
        // root no key at all unless `root_key`s are declared.
        let user = spec.ssh.user.as_deref().filter(|user| *user != "root");
        let deploy_key = spec.deploy_public_key.clone().or_else(|| key_pair_public_key(spec.key_name.as_ref()));
        if spec.deploy && deploy_key.is_none() && (user.is_some() || spec.root_keys.is_empty()) {
            let (field, who) = match user {
                Some(_) => ("values.options.paranix.deployUser.keys", "the deploy user"),
                None => ("values.options.paranix.rootKeys", "root"),
            };
            self.record_error(
                address,
                field,
                format!(
                    "no key would be admitted for {who} on the deployed system, which would lock the deploy out: give \
                     the host a managed key pair's `key_name()` (its public key is admitted automatically), or \
                     `HostSpec::deploy_public_key(...)`"
                ),
            );
        }
        let (root_keys, deploy_user_key) = match user {
            None => (deploy_key.iter().chain(&spec.root_keys).map(Value::to_attr).collect::<Vec<_>>(), None),
            Some(_) => (spec.root_keys.iter().map(Value::to_attr).collect(), deploy_key.map(|k| k.to_attr())),
        };
        if !root_keys.is_empty() {
            system = system.option_attr(&["paranix", "rootKeys"], Attr::List(root_keys));
        }
        if let (Some(user), Some(key)) = (user, deploy_user_key) {
            system = system
                .option_attr(&["paranix", "deployUser", "name"], Attr::str(user))
                .option_attr(&["paranix", "deployUser", "keys"], Attr::List(vec![key]));
        }

        // What the machine can hold: services that do not fit are off by default there (common/default.nix).
        if let Some(mib) = ec2::small_instance_memory_mib(&spec.instance_type) {
            system = system.option_attr(&["paranix", "host", "memoryMiB"], Attr::Int(i64::from(mib)));
            let antivirus = spec.options.iter().any(|(path, value)| {
                path.iter().map(String::as_str).eq(ANTIVIRUS_OPTION)
                    && matches!(value, OptionValue::Data(Attr::Bool(true)))
            });
            if antivirus {
                self.record_error(
                    address,
                    "values.options.paranix.antivirus.enable",
                    format!(
                        "{} has {mib} MiB of memory; the ClamAV daemon holds its signatures in over 1 GiB and would \
                         be killed for lack of memory at every switch, so every deploy would roll back: pick an \
                         instance type with 4 GiB (t3.medium) or more, or leave the antivirus off",
                        spec.instance_type
                    ),
                );
            }
        }
        system
    }

    /// Declares a host: its instance, NixOS system and deployment (see [the module docs](mod@crate::host)).
    pub fn add_host(&mut self, host: impl Into<HostSpec>) -> HostHandle {
        let spec: HostSpec = host.into();
        let name = spec.name.clone();

        let (size, volume_type) = &spec.root_volume;
        let mut instance = ec2::Instance::new(&name)
            .instance_type(&spec.instance_type)
            .root_volume_size_gib(*size)
            .root_volume_type(volume_type)
            .tag("Name", &name);
        if let Some(ami) = &spec.ami {
            instance = instance.ami(ami.clone());
        }
        if let Some(key) = &spec.key_name {
            instance = instance.key_name(key.clone());
        }
        for group in &spec.security_groups {
            instance = instance.security_group(group.clone());
        }
        if matches!(spec.host_key, HostKeyPolicy::Console) {
            instance = instance.host_key_from_console();
        }
        for (key, value) in &spec.tags {
            instance = instance.tag(key, value);
        }
        let instance = self.add(instance);

        let system_nix =
            spec.system.clone().unwrap_or_else(|| ec2::instance_nix_system(&spec.instance_type).to_owned());
        let mut system = System::new(&name, &spec.configuration).host_nix(&spec.host_nix).system(system_nix);
        for (path, value) in &spec.options {
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            let attr = match value {
                OptionValue::Data(attr) => attr.clone(),
                OptionValue::Instance(InstanceOutput::PublicIp) => instance.public_ip().to_option_attr(),
                OptionValue::Instance(InstanceOutput::PrivateIp) => instance.private_ip().to_option_attr(),
                OptionValue::Instance(InstanceOutput::PublicDns) => instance.public_dns().to_option_attr(),
                OptionValue::Instance(InstanceOutput::Id) => instance.id().to_option_attr(),
            };
            system = system.option_attr(&path, attr);
        }
        let system_address = Address::managed(crate::nixos::SYSTEM.kind, &name);
        let system = self.host_options(&spec, &system_address, system);

        if !spec.deploy {
            return HostHandle {
                instance,
                system: Handle::new(Address::managed(crate::nixos::SYSTEM.kind, &name)),
                deployment: Handle::new(Address::managed(crate::nixos::deploy::DEPLOYMENT.kind, &name)),
            };
        }
        let system = self.add(system);

        let ssh = &spec.ssh;
        let mut deployment = Deployment::new(&name)
            .host(ssh.address.clone().unwrap_or_else(|| instance.public_ip().into()))
            .port(i64::from(ssh.port.unwrap_or(22)))
            .toplevel(system.toplevel())
            .instance(instance.id());
        if let Some(user) = &ssh.user {
            deployment = deployment.user(user);
        }
        deployment = match (&ssh.host_key, &spec.host_key) {
            (Some(key), _) | (None, HostKeyPolicy::Pinned(key)) => deployment.host_key(key.clone()),
            (None, HostKeyPolicy::Console) => deployment.host_key(instance.ssh_host_key()),
            (None, HostKeyPolicy::TrustOnFirstUse) => deployment.trust_host_key_on_first_use(),
        };
        if let Some(file) = &ssh.identity_file {
            deployment = deployment.identity_file(file);
        } else if let Some(key) = &spec.private_key {
            deployment = deployment.private_key(key.0.clone());
        }
        for check in &spec.health_checks {
            let check = match check {
                HealthCheck::Http { port, path } => {
                    let port =
                        ssh.forwarded.iter().find(|(remote, _)| remote == port).map_or(*port, |(_, local)| *local);
                    HealthCheck::http(port, path)
                }
                other => other.clone(),
            };
            deployment = deployment.health_check(check);
        }
        if let Some(deadline) = spec.health_deadline {
            deployment = deployment.health_deadline(deadline);
        }
        if let Some(within) = spec.confirm_within {
            deployment = deployment.confirm_within(within);
        }
        if let Some(timeout) = spec.connect_timeout {
            deployment = deployment.connect_timeout(timeout);
        }
        let deployment = self.add(deployment);
        HostHandle { instance, system, deployment }
    }
}
