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
//! - **NixOS deploys roll back by themselves**: host keys pinned, a watchdog armed on the host before anything
//!   changes, confirmation over a fresh connection, health checks; a rollback fails the run ([`nixos::deploy`]).
//! - **Wrong wiring does not compile** ([`value`]): fields take `impl Into<Value<T>>`, so an ARN cannot be
//!   passed where an AMI id belongs. Bad values are reported all at once, naming resource and field, before
//!   any API call.
//! - **Secrets stay secret**: sensitive fields are redacted in plans (text and JSON), diffs and events.
//! - **The library never prints and never exits**: it returns values and emits [`events`].
//!
//! ## Code map
//!
//! | module | what it holds |
//! |---|---|
//! | [`aws`] (`s3`, `iam`, `ec2`, `ebs`) | typed resource builders and their providers, one module per AWS service; [`aws::context`] (clients, request accounting, errors, waiters), [`aws::limit`] (per-service rate limits) |
//! | [`nixos`] | NixOS images and systems built with Nix, and deployments over SSH with rollback ([`nixos::deploy`], [`nixos::ssh`]) |
//! | [`stack`] | [`Stack`](stack::Stack), [`Project`](stack::Project), outputs, [`RemoteState`](stack::RemoteState) |
//! | [`value`], [`attr`] | typed references ([`Output<T>`](value::Output)) and the dynamic values the planner diffs |
//! | [`schema`], [`resource`] | what the planner knows about a kind; the [`Resource`](resource::Resource) trait |
//! | [`graph`] | dependency graph, topological order, cycle errors |
//! | [`plan`] | the pure planner, the plan data model, text and JSON rendering |
//! | [`apply`] | the executor: DAG walk, bounded parallelism, journal |
//! | [`state`] | the state format and stores (local file with lock file; S3 with conditional writes) |
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
pub use paranix_macros::host;

/// What `#[host]` expands to. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private;
pub use error::{Error, ErrorKind, Result};
