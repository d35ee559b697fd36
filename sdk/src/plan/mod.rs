//! Plans: data describing what an apply would do, made by a pure function of values.
//!
//! [`plan`] takes the desired [`Stack`](crate::stack::Stack), the prior [`State`](crate::state::State) (what
//! paranix recorded) and the refreshed state (what the cloud has now), and returns a [`Plan`]: one
//! [`Change`] per resource with an [`Action`], the [`Reason`]s for it and an attribute diff, the changes to
//! stack outputs, and the drift between the prior and the refreshed state. It does no I/O.
//!
//! A plan renders as text close to Terraform's ([`Plan::render`], `Display`) and serialises as JSON in a
//! documented, stable form (`format_version` 1): the serde form of the types in this module, with attribute
//! values as described in [`crate::attr`].

pub(crate) mod checks;
pub(crate) mod planner;
mod render;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use checks::Warning;
pub(crate) use planner::looks_secret;
pub use planner::{PlanOptions, plan};
pub use render::RenderOptions;

use crate::address::Address;
use crate::attr::{Attr, Attrs};

/// The plan file format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// What a change does to a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing to do.
    NoOp,
    /// Create a new object (`+`).
    Create,
    /// Update the object in place (`~`).
    Update,
    /// Delete and re-create (`-/+`), or create then delete with `create_before_destroy` (`+/-`).
    Replace,
    /// Delete the object (`-`).
    Delete,
    /// Read a data source during apply (`<=`).
    Read,
}

impl Action {
    /// Whether the action calls a mutating API.
    pub fn is_mutation(self) -> bool {
        matches!(self, Action::Create | Action::Update | Action::Replace | Action::Delete)
    }
}

/// Why a change has its action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    /// Create: the resource is declared and not in state.
    NotInState,
    /// Create: the state has it, but it was deleted outside paranix.
    GoneOutOfBand,
    /// Update: these fields differ.
    FieldsChanged {
        /// The fields.
        fields: Vec<String>,
    },
    /// Replace: these fields differ and cannot be changed in place.
    ForcesReplacement {
        /// The fields.
        fields: Vec<String>,
    },
    /// Delete: the resource is in state but no longer declared.
    NotInConfiguration,
    /// Delete: a destroy was requested.
    DestroyRequested,
    /// Read: the data source's values depend on changes in this run.
    ReadDuringApply,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = |fields: &[String]| fields.iter().map(|x| format!("`{x}`")).collect::<Vec<_>>().join(", ");
        match self {
            Reason::NotInState => f.write_str("not in state"),
            Reason::GoneOutOfBand => f.write_str("deleted outside paranix"),
            Reason::FieldsChanged { fields: fs } => write!(f, "{} changed", fields(fs)),
            Reason::ForcesReplacement { fields: fs } => {
                write!(f, "{} {} replacement", fields(fs), if fs.len() == 1 { "forces" } else { "force" })
            }
            Reason::NotInConfiguration => f.write_str("not in configuration"),
            Reason::DestroyRequested => f.write_str("destroy requested"),
            Reason::ReadDuringApply => f.write_str("its values depend on changes in this run"),
        }
    }
}

/// How one input field changes. Sensitive values are redacted to [`Attr::Sensitive`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttrDiff {
    /// The field name.
    pub field: String,
    /// Its value in the refreshed state (`None`: not set).
    pub before: Option<Attr>,
    /// Its planned value (`None`: removed); may hold `(known after apply)` leaves.
    pub after: Option<Attr>,
    /// The field cannot change in place.
    pub forces_replacement: bool,
    /// The field is sensitive (values redacted).
    pub sensitive: bool,
}

/// The planned change of one resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The resource.
    pub address: Address,
    /// What happens to it.
    pub action: Action,
    /// Why.
    pub reasons: Vec<Reason>,
    /// For [`Action::Replace`]: create the new object before deleting the old one.
    #[serde(default)]
    pub create_before_destroy: bool,
    /// Inputs and outputs now (absent for creates); sensitive values redacted.
    pub before: Option<Attrs>,
    /// Inputs and outputs after apply (absent for deletes); sensitive values redacted, unknowns marked.
    pub after: Option<Attrs>,
    /// The input fields that change.
    pub diffs: Vec<AttrDiff>,
    /// What the resource depends on in the configuration (creates and updates wait for these).
    pub depends_on: Vec<Address>,
    /// What it depended on when last applied (its delete waits for the deletes of its dependents).
    pub prior_dependencies: Vec<Address>,
}

/// The planned change of one stack output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputChange {
    /// The output's name.
    pub name: String,
    /// `create`, `update`, `delete` or `no_op`.
    pub action: Action,
    /// Its recorded value.
    pub before: Option<Attr>,
    /// Its planned value.
    pub after: Option<Attr>,
    /// Redacted.
    pub sensitive: bool,
}

/// A difference between what paranix recorded and what the cloud has now ("changed outside paranix").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// The resource.
    pub address: Address,
    /// It no longer exists.
    pub deleted: bool,
    /// The fields that differ (recorded -> observed).
    pub diffs: Vec<AttrDiff>,
}

/// The state a plan was made against; a saved plan is refused once the state moved on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateVersion {
    /// The state's lineage.
    pub lineage: String,
    /// The state's serial.
    pub serial: u64,
}

/// The plan of one stack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The stack.
    pub stack: String,
    /// A destroy plan.
    pub destroy: bool,
    /// The state the plan was made against (`None`: the stack had no state).
    pub state: Option<StateVersion>,
    /// SHA-256 of the configuration the plan was made from (sensitive values excluded).
    pub config_digest: String,
    /// Whether the cloud was read (refresh) before planning; `false` for offline plans.
    pub refreshed: bool,
    /// `--target` addresses the plan was restricted to.
    #[serde(default)]
    pub targets: Vec<Address>,
    /// One change per resource involved, sorted by address (no-ops included).
    pub changes: Vec<Change>,
    /// Changes to stack outputs, sorted by name (no-ops included).
    pub outputs: Vec<OutputChange>,
    /// Changes made outside paranix, found by refresh.
    pub drift: Vec<Drift>,
    /// Notes about how the plan was made (e.g. state that could not be read without AWS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Security warnings about the configuration (see [`Warning`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
}

/// Counts of a plan's changes, as in `Plan: 1 to add, 0 to change, 0 to destroy.`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Creates plus replaces.
    pub add: usize,
    /// In-place updates.
    pub change: usize,
    /// Deletes plus replaces.
    pub destroy: usize,
    /// Data sources read during apply.
    pub read: usize,
}

impl Plan {
    /// Every change, sorted by address, no-ops included.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// The changes with `action`.
    pub fn changes_with(&self, action: Action) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(move |c| c.action == action)
    }

    /// The change of `address`, if the plan involves it.
    pub fn change(&self, address: &Address) -> Option<&Change> {
        self.changes.iter().find(|c| &c.address == address)
    }

    /// True when applying would change nothing: no resource or output change.
    pub fn is_empty(&self) -> bool {
        self.changes.iter().all(|c| c.action == Action::NoOp) && self.outputs.iter().all(|o| o.action == Action::NoOp)
    }

    /// The counts of the summary line.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Replace => {
                    s.add += 1;
                    s.destroy += 1;
                }
                Action::Delete => s.destroy += 1,
                Action::Read => s.read += 1,
                Action::NoOp => {}
            }
        }
        s
    }

    /// The plan as JSON (the plan file format).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plans always serialise")
    }
}

/// The plans of a project's stacks, in order. This is what `plan --out FILE` saves.
///
/// A plan file is an approval, not an instruction: [`crate::ops::apply`] applies a plan exactly as it came from
/// [`crate::ops::plan`] in this process, and any other plan (read from a file, or changed since) only after
/// planning again and finding the same changes, field for field (see [`crate::ops::apply`]). With a plan key
/// ([`PlanKey`]), plan files are also signed and a file signed with another key, or not at all, is refused.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProjectPlan {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// One plan per stack, in project order (reverse order for destroys).
    pub stacks: Vec<Plan>,
    /// `hmac-sha256:<hex>` over the rest of the plan, when signed with a [`PlanKey`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The digest of the content as `ops::plan` made it, in this process; never serialised.
    #[serde(skip)]
    made_here: Option<[u8; 32]>,
}

impl PartialEq for ProjectPlan {
    fn eq(&self, other: &Self) -> bool {
        self.format_version == other.format_version && self.stacks == other.stacks && self.signature == other.signature
    }
}

/// A secret that signs plan files (HMAC-SHA256), so that `up FILE` takes only files this team's key made.
/// The CLI reads it from `PARANIX_PLAN_KEY`. Never shown: its `Debug` form is redacted.
#[derive(Clone)]
pub struct PlanKey(Vec<u8>);

impl PlanKey {
    /// A key from secret bytes: at least 32 of them (a random 32-byte value, as hex or base64 text, is right).
    pub fn new(secret: impl Into<Vec<u8>>) -> crate::Result<Self> {
        let secret = secret.into();
        if secret.len() < 32 {
            return Err(crate::Error::new(
                crate::ErrorKind::Usage,
                format!("a plan key needs at least 32 bytes of secret, this one has {}", secret.len()),
            ));
        }
        Ok(PlanKey(secret))
    }

    fn mac(&self, plan: &ProjectPlan) -> hmac::Hmac<sha2::Sha256> {
        use hmac::KeyInit as _;
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(&plan.content_bytes());
        mac
    }
}

impl fmt::Debug for PlanKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlanKey(<redacted>)")
    }
}

impl ProjectPlan {
    /// A plan of these stacks' plans (what `ops::plan` returns, marked as made in this process).
    pub(crate) fn made_here(stacks: Vec<Plan>) -> Self {
        let mut plan = ProjectPlan { format_version: FORMAT_VERSION, stacks, signature: None, made_here: None };
        plan.made_here = Some(plan.content_digest());
        plan
    }

    /// The signed content: everything but the signature, in the file's (stable) JSON form.
    fn content_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&(self.format_version, &self.stacks)).expect("plans always serialise")
    }

    fn content_digest(&self) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::digest(self.content_bytes()).into()
    }

    /// Whether this plan is exactly as [`crate::ops::plan`] made it in this process (not read from a file,
    /// not changed since). Such a plan is applied as it is; any other is planned again and compared first.
    pub fn is_as_planned(&self) -> bool {
        self.made_here.is_some_and(|digest| digest == self.content_digest())
    }

    /// Signs the plan with `key` (`plan --out` does when a key is configured).
    pub fn sign(&mut self, key: &PlanKey) {
        use hmac::Mac as _;
        let tag = key.mac(self).finalize().into_bytes();
        self.signature = Some(format!("hmac-sha256:{}", tag.iter().map(|b| format!("{b:02x}")).collect::<String>()));
    }

    /// Checks the signature against `key`: refused (naming why) when the plan is unsigned, signed with another
    /// key, or changed since it was signed.
    pub fn check_signature(&self, key: &PlanKey) -> crate::Result<()> {
        use hmac::Mac as _;
        let refuse = |why: &str| {
            crate::Error::new(
                crate::ErrorKind::StalePlan,
                format!("the plan file is refused: {why}; nothing was changed"),
            )
        };
        let Some(signature) = &self.signature else {
            return Err(refuse("it is not signed, and this workspace has a plan key (PARANIX_PLAN_KEY)"));
        };
        let tag = signature
            .strip_prefix("hmac-sha256:")
            .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|hex| {
                (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0)).collect::<Vec<u8>>()
            })
            .ok_or_else(|| refuse("its signature is not an `hmac-sha256:<64 hex digits>` value"))?;
        key.mac(self)
            .verify_slice(&tag)
            .map_err(|_| refuse("its signature does not match: it was signed with another key, or changed since"))
    }
    /// True when no stack's plan changes anything.
    pub fn is_empty(&self) -> bool {
        self.stacks.iter().all(Plan::is_empty)
    }

    /// The summed counts.
    pub fn summary(&self) -> Summary {
        self.stacks.iter().map(Plan::summary).fold(Summary::default(), |a, b| Summary {
            add: a.add + b.add,
            change: a.change + b.change,
            destroy: a.destroy + b.destroy,
            read: a.read + b.read,
        })
    }

    /// The plan of stack `name`.
    pub fn stack(&self, name: &str) -> Option<&Plan> {
        self.stacks.iter().find(|p| p.stack == name)
    }

    /// As JSON (the plan file format).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plans always serialise")
    }

    /// Parses a plan file.
    pub fn from_json(text: &str) -> crate::Result<Self> {
        let plan: ProjectPlan = serde_json::from_str(text)
            .map_err(|e| crate::Error::new(crate::ErrorKind::StalePlan, format!("not a paranix plan file: {e}")))?;
        if plan.format_version != FORMAT_VERSION {
            return Err(crate::Error::new(
                crate::ErrorKind::StalePlan,
                format!("plan file format {} is not {FORMAT_VERSION}; plan again", plan.format_version),
            ));
        }
        Ok(plan)
    }
}
