//! # paranix: paranoid NixOS infrastructure as Rust code
//!
//! paranix turns a description of AWS infrastructure and NixOS hosts, written in Rust, into a **plan** (an
//! exact, deterministic diff against the real world), shows it, and **applies** it in dependency order,
//! recording every step in a **state** that survives crashes.
//!
//! ## A tour
//!
//! ```
//! use paranix::prelude::*;
//!
//! // Outputs shared between stacks are typed names.
//! pub const AMI_ID: OutputKey<ImageId> = OutputKey::new("ami_id");
//!
//! let mut images = Stack::new("images");
//! let bucket = images.add(s3::Bucket::new("images").bucket("example-nixos-images"));
//! let snapshot = images.add(ebs::Snapshot::new("nixos").source_output("/nix/store/example-nixos.img", "example"));
//! let ami = images.add(ec2::Image::new("nixos").root_snapshot(snapshot.id()));
//! images.export(&AMI_ID, ami.id());
//!
//! let mut web = Stack::new("web");
//! let image = web.add(RemoteState::of(&images));
//! let sg = web.add(ec2::SecurityGroup::new("web").ingress(ec2::Rule::tcp(80).anywhere()));
//! web.add(
//!     ec2::Instance::new("web")
//!         .ami(image.output(&AMI_ID)) // a typed reference: an Output<Arn> here would not compile
//!         .instance_type("t3.micro")
//!         .security_group(sg.id()),
//! );
//! let _ = bucket;
//!
//! // Plans are data: render them, filter them, snapshot them.
//! let plan = paranix::testing::plan_offline(&web).unwrap();
//! assert_eq!(plan.summary().add, 2);
//! assert!(plan.to_string().contains("(known after apply)"));
//! ```
//!
//! Hosts (an instance plus the NixOS system deployed to it) are declared with [`#[host]`](macro@host), which
//! checks its arguments at compile time and wires the instance, the system and the deployment together
//! ([`mod@host`]).
//!
//! A program hands its [`Project`](stack::Project) to `cli::run` and gets `plan`, `up`, `destroy`,
//! `refresh`, `output` and `state` subcommands; an internal tool calls [`ops`] directly and reads plans and
//! events as data.
//!
//! ## Guarantees
//!
//! - **The planner is pure** ([`plan::plan`]): no I/O, deterministic order, a reason on every replace and
//!   delete, `(known after apply)` for values that depend on changes in the same run.
//! - **Apply does what the plan showed, never more** ([`apply::apply`]): a saved plan is refused when the
//!   state or the configuration moved on; an update that turns out unnecessary once its inputs are known is
//!   skipped; one that would now need a replacement is refused.
//! - **State is written after every step**, atomically, with an intent journal, under a lock that names its
//!   holder ([`state`]). A run killed at any point is taken over by the next: creates retry with the same
//!   idempotency tokens, so nothing is made twice.
//! - **NixOS deploys never lose a host**: host keys pinned on every SSH connection, the switch and its watchdog
//!   detached on the host, exactly one decision per deploy (confirmed after a fresh login and the health checks,
//!   or rolled back by the host itself), a deploy left unconfirmed by a killed run settled by the next one; a
//!   rollback fails the run and says what the host runs ([`nixos::deploy`]).
//! - **Wrong wiring does not compile** ([`value`]): fields take `impl Into<Value<T>>`, so an ARN cannot be
//!   passed where an AMI id belongs. Bad values are reported all at once, naming resource and field, before
//!   any API call.
//! - **Secrets stay secret**: sensitive fields are redacted in plans (text and JSON), diffs, events and
//!   errors, and encrypted in state when a passphrase is configured ([`state::encryption`]).
//! - **The library never prints and never exits**: it returns values and emits [`events`].
//!
//! ## Code map
//!
//! | module | what it holds |
//! |---|---|
//! | [`aws`] (`s3`, `iam`, `ec2`, `ebs`) | typed resource builders and their providers, one module per AWS service; [`aws::context`] (clients, request accounting, errors, waiters), [`aws::limit`] (per-service rate limits) |
//! | [`nixos`] | NixOS images and systems built with Nix, and deployments over SSH with rollback ([`nixos::deploy`], [`nixos::ssh`]) |
//! | [`mod@host`], [`macro@host`] | hosts: instance + system + deployment as one item, the `#[host]` attribute and its hand-written equivalent |
//! | [`stack`] | [`Stack`](stack::Stack), [`Project`](stack::Project), outputs, [`RemoteState`](stack::RemoteState) |
//! | [`value`], [`attr`] | typed references ([`Output<T>`](value::Output)) and the dynamic values the planner diffs |
//! | [`schema`], [`resource`] | what the planner knows about a kind; the [`Resource`](resource::Resource) trait |
//! | [`graph`] | dependency graph, topological order, cycle errors |
//! | [`plan`] | the pure planner, the plan data model, text and JSON rendering |
//! | [`apply`] | the executor: DAG walk, bounded parallelism, journal |
//! | [`state`] | the state format and stores (local file with lock file; S3 with conditional writes); encryption of sensitive values at rest |
//! | [`provider`] | the seam to the outside world |
//! | [`ops`], `cli`, `sandbox` | operations on projects; the command line for user programs; the local AWS sandbox |
//! | [`testing`] | offline planning for snapshot tests; an in-memory cloud |

pub mod address;
pub mod apply;
pub mod attr;
pub mod aws;
#[cfg(feature = "cli")]
pub mod cli;
pub mod error;
pub mod events;
pub mod graph;
pub mod host;
pub mod nixos;
pub mod ops;
pub mod plan;
pub mod prelude;
pub mod provider;
pub mod resource;
#[cfg(feature = "cli")]
pub mod sandbox;
pub mod schema;
pub mod stack;
pub mod state;
pub mod testing;
pub mod value;

pub use aws::{ebs, ec2, iam, s3};
/// Declares a NixOS host: an EC2 instance plus the NixOS system deployed to it, as one Rust struct checked at
/// compile time.
///
/// The attribute goes on a struct whose fields are what the host takes from other resources, each a typed
/// output; it implements [`host::Host`] for the struct, and [`Stack::add_host`](stack::Stack::add_host)
/// declares the host's instance (`aws_instance.<name>`), its NixOS system (`nixos_system.<name>`) and the
/// deployment of that system to the instance (`nixos_deployment.<name>`), wired together.
///
/// ```
/// use paranix::prelude::*;
///
/// /// The web host.
/// #[paranix::host(
///     instance_type = "t3.micro",
///     root_volume(size_gib = 40, volume_type = "gp3"),
///     configuration = "examples/printerfacts/host.nix",
///     host_key = console,
///     health_checks(http(port = 80, path = "/fact"), command("systemctl", "is-active", "nginx")),
///     nixos(paranix.services.printerfacts.domain = public_ip),
///     tags(Project = "printerfacts"),
/// )]
/// struct Web {
///     ami: Output<ImageId>,
///     key_name: Output<KeyName>,
///     security_groups: Vec<Output<SecurityGroupId>>,
///     private_key: Output<String>,
/// }
///
/// let mut stack = Stack::new("web");
/// let ami = stack.add(ec2::Image::new("nixos").image_name("web").root_snapshot("snap-0123456789abcdef0"));
/// let key = stack.add(ec2::KeyPair::generate("deployer"));
/// let group = stack.add(ec2::SecurityGroup::new("web").description("HTTP in"));
/// let web = stack.add_host(Web {
///     ami: ami.id(),
///     key_name: key.key_name(),
///     security_groups: vec![group.id()],
///     private_key: key.private_key(),
/// });
/// // Typed handles for other resources and checks:
/// let _: Output<InstanceId> = web.instance_id();
/// let _: Output<HostAddress> = web.public_ip();
/// let _: Output<StorePath> = web.toplevel();
/// ```
///
/// # Arguments
///
/// | argument | required | checked at compile time |
/// |---|---|---|
/// | `instance_type = "t3.micro"` | yes | a known EC2 family and size (a typo gets a suggestion); Graviton families build `aarch64-linux` systems |
/// | `configuration = "hosts/web.nix"` | yes | the file exists, relative to the project root (the Cargo workspace root, where paranix runs and `nix/` lives); otherwise the `.nix` files next to it are listed |
/// | `root_volume(size_gib = 40, volume_type = "gp3")` | no (8 GiB gp3) | a bootable EBS type (gp3, gp2, io1, io2, standard) and a size within its limits |
/// | `host_key = console` | no (`console`) | `console` (the key NixOS prints on the serial console), `trust_on_first_use`, or `pinned` (with a `host_key` field) |
/// | `health_checks(http(port = 80, path = "/"), command("prog", "arg"))` | no | ports in 1..=65535, absolute paths, a non-empty command |
/// | `nixos(a.b.c = value, ...)` | no | option paths set once and not overlapping; values are literals, the instance's own `public_ip`, `private_ip`, `public_dns`, `instance_id`, or `self.<field>` |
/// | `tags(Key = "value", "key-with-dashes" = "value")` | no | EC2 tag limits; `Name` is the host's name |
/// | `name = "web-1"` | no (the struct's name in snake case) | a valid resource name |
///
/// Unknown and duplicate arguments are errors; every error names the argument and lists the valid choices,
/// and all of them are reported at once, next to the unchanged struct (so IDEs keep working).
///
/// NixOS option values reach Nix as JSON data (the `options` field of the `PARANIX_VALUES` file, merged as a
/// module by `nix/eval.nix`), never as Nix source text.
///
/// # Fields
///
/// `ami` (an `Output<ImageId>`), `key_name` (`Output<KeyName>`) and `security_groups`
/// (`Vec<Output<SecurityGroupId>>`) are required; `private_key` (`Output<String>`, the deploy key) and
/// `host_key` (`Output<PublicKey>`, with `host_key = pinned`) are optional; other fields are the struct's
/// own, usable as `self.<field>` in `nixos(...)`. A field of the wrong type, or an output of the wrong kind
/// wired into one, fails to compile.
///
/// # Without the macro
///
/// The attribute writes an implementation of [`host::Host`] through [`host::HostSpec`]'s public builder. The
/// struct above expands to this (with absolute paths):
///
/// ```
/// # use paranix::prelude::*;
/// use paranix::host::{Host, HostKeyPolicy, HostSpec, InstanceOutput};
/// use paranix::nixos::HealthCheck;
/// # struct Web { ami: Output<ImageId>, key_name: Output<KeyName>, security_groups: Vec<Output<SecurityGroupId>>, private_key: Output<String> }
///
/// impl Host for Web {
///     const NAME: &'static str = "web";
///
///     fn spec(self) -> HostSpec {
///         let mut spec = HostSpec::new(Self::NAME, "examples/printerfacts/host.nix")
///             .instance_type("t3.micro")
///             .system("x86_64-linux")
///             .root_volume(40, "gp3")
///             .ami(self.ami)
///             .key_name(self.key_name)
///             .private_key(self.private_key)
///             .host_key(HostKeyPolicy::Console)
///             .health_check(HealthCheck::http(80, "/fact"))
///             .health_check(HealthCheck::command(["systemctl", "is-active", "nginx"]))
///             .option_from_instance(&["paranix", "services", "printerfacts", "domain"], InstanceOutput::PublicIp)
///             .tag("Project", "printerfacts");
///         for group in self.security_groups {
///             spec = spec.security_group(group);
///         }
///         spec
///     }
/// }
/// ```
///
/// Per use, [`HostSpec`](host::HostSpec) adjusts what the attribute declared: `Web { .. }.spec()
/// .name("web-2")`, an SSH address override for bastions, VPNs and tests (`.ssh_address(..)`,
/// `.ssh_port(..)`, `.ssh_host_key(..)`), or `.infrastructure_only()`.
pub use paranix_macros::host;

/// What `#[host]` expands to. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private;
pub use error::{Error, ErrorKind, Result};
