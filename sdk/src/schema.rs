//! [`Schema`]: what the planner needs to know about a resource kind, declared once per kind as a `static`.
//!
//! A schema lists the kind's input fields (which force replacement, which are sensitive, how values compare)
//! and its outputs (computed by the cloud, some derivable from inputs ahead of time).

use crate::address::Mode;
use crate::attr::{Attr, Attrs};

/// How two values of one field are compared by the planner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    /// Structural equality.
    Exact,
    /// A list whose order does not matter (security group rules, ids): compared sorted, duplicates removed.
    Set,
    /// An IAM policy document: compared in canonical form, never as text (see [`crate::aws::iam::canonical`]).
    PolicyDocument,
    /// Security group rules: compared as the set of (protocol, ports, CIDR, description) they allow, however
    /// they are grouped (see [`crate::aws::ec2::canonical_rules`]).
    Rules,
}

/// One input field of a resource kind.
#[derive(Debug)]
pub struct Field {
    /// The attribute name, as in state and plans (snake_case, like the AWS API's field).
    pub name: &'static str,
    /// Changing it cannot be done in place: the resource is replaced.
    pub force_new: bool,
    /// Its value never appears in plans, events, logs or errors.
    pub sensitive: bool,
    /// How values are compared.
    pub compare: Compare,
}

impl Field {
    /// An updatable, non-sensitive field compared exactly.
    pub const fn new(name: &'static str) -> Self {
        Field { name, force_new: false, sensitive: false, compare: Compare::Exact }
    }

    /// Marks the field as forcing replacement.
    pub const fn force_new(mut self) -> Self {
        self.force_new = true;
        self
    }

    /// Marks the field as sensitive.
    pub const fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    /// Sets the comparison rule.
    pub const fn compare(mut self, compare: Compare) -> Self {
        self.compare = compare;
        self
    }
}

/// One computed output of a resource kind.
#[derive(Debug)]
pub struct OutputField {
    /// The attribute name (`arn`, `id`, `public_ip`).
    pub name: &'static str,
    /// Its value never appears in plans, events, logs or errors (a generated private key).
    pub sensitive: bool,
    /// Its value is a function of the inputs, so an update changes it: the plan shows the value the kind's
    /// `predict` gives for the new inputs, or `(known after apply)` (a NixOS system's toplevel).
    pub derived: bool,
}

impl OutputField {
    /// A non-sensitive output.
    pub const fn new(name: &'static str) -> Self {
        OutputField { name, sensitive: false, derived: false }
    }

    /// A sensitive output.
    pub const fn sensitive(name: &'static str) -> Self {
        OutputField { name, sensitive: true, derived: false }
    }

    /// An output derived from the inputs (see [`OutputField::derived`](OutputField#structfield.derived)).
    pub const fn derived(name: &'static str) -> Self {
        OutputField { name, sensitive: false, derived: true }
    }
}

/// The planner's view of a resource kind.
#[derive(Debug)]
pub struct Schema {
    /// The kind name used in addresses, e.g. `aws_s3_bucket`.
    pub kind: &'static str,
    /// Managed resource or data source.
    pub mode: Mode,
    /// Input fields.
    pub fields: &'static [Field],
    /// Computed outputs.
    pub outputs: &'static [OutputField],
    /// The output that identifies the object in the cloud (shown next to updates), if any.
    pub id: Option<&'static str>,
    /// Outputs derivable from the inputs before the object exists (a bucket's ARN from its name).
    pub predict: fn(&Attrs) -> Attrs,
    /// Outputs are not fixed by the kind (a remote state has whatever outputs the other stack exports).
    pub open_outputs: bool,
}

impl Schema {
    /// The input field called `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Whether the input or output `name` is sensitive.
    pub fn is_sensitive(&self, name: &str) -> bool {
        self.field(name).is_some_and(|f| f.sensitive) || self.outputs.iter().any(|o| o.name == name && o.sensitive)
    }

    /// Whether `name` is an input or output of this kind.
    pub fn has_attribute(&self, name: &str) -> bool {
        self.open_outputs || self.field(name).is_some() || self.outputs.iter().any(|o| o.name == name)
    }

    /// Canonical form of a field's value for comparison.
    pub fn canonical(&self, field: &str, value: &Attr) -> Attr {
        match self.field(field).map(|f| f.compare) {
            Some(Compare::Set) => match value {
                Attr::List(items) => {
                    let mut items = items.clone();
                    items.sort_by(sort_key);
                    items.dedup();
                    Attr::List(items)
                }
                other => other.clone(),
            },
            Some(Compare::PolicyDocument) => crate::aws::iam::canonical(value),
            Some(Compare::Rules) => crate::aws::ec2::canonical_rules(value),
            _ => value.clone(),
        }
    }
}

/// A total order over attributes, for canonical sorting (by their JSON text, which is deterministic).
pub(crate) fn sort_key(a: &Attr, b: &Attr) -> std::cmp::Ordering {
    a.to_json().to_string().cmp(&b.to_json().to_string())
}

/// Predicts nothing: for kinds whose outputs all come from the cloud.
pub fn predict_nothing(_: &Attrs) -> Attrs {
    Attrs::new()
}
