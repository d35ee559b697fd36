//! AWS IAM: [`Role`], [`RolePolicy`] (an inline policy) and the typed [`PolicyDocument`] builder.
//!
//! Policy documents are compared in canonical form ([`canonical`]), never as text: reordering statements,
//! actions or resources, or writing a single action as a string instead of a one-element list, is not a
//! change.

use std::collections::BTreeMap;

use crate::address::Mode;
use crate::attr::{Attr, Attrs};
use crate::aws::{lifecycle_methods, tag_methods, tags_attr, validate};
use crate::resource::{Handle, Lifecycle, Resource, Validator};
use crate::schema::{Compare, Field, OutputField, Schema, sort_key};
use crate::value::{Arn, Output, RoleName, Value};

/// The policy language version every document gets unless it says otherwise.
pub const POLICY_VERSION: &str = "2012-10-17";

/// `Allow` or `Deny`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Grants.
    Allow,
    /// Denies (wins over any allow).
    Deny,
}

/// One statement of a policy document.
#[derive(Clone, Debug)]
pub struct Statement {
    sid: Option<String>,
    effect: Effect,
    actions: Vec<String>,
    resources: Vec<Attr>,
    principals: BTreeMap<String, Vec<String>>,
    conditions: BTreeMap<String, BTreeMap<String, Vec<Attr>>>,
}

impl Statement {
    /// An `Allow` statement.
    pub fn allow() -> Self {
        Statement::new(Effect::Allow)
    }

    /// A `Deny` statement.
    pub fn deny() -> Self {
        Statement::new(Effect::Deny)
    }

    fn new(effect: Effect) -> Self {
        Statement {
            sid: None,
            effect,
            actions: Vec::new(),
            resources: Vec::new(),
            principals: BTreeMap::new(),
            conditions: BTreeMap::new(),
        }
    }

    /// The statement id.
    pub fn sid(mut self, sid: impl Into<String>) -> Self {
        self.sid = Some(sid.into());
        self
    }

    /// Adds an action (`s3:GetObject`, `ec2:Describe*`).
    pub fn action(mut self, action: impl Into<String>) -> Self {
        self.actions.push(action.into());
        self
    }

    /// Adds actions.
    pub fn actions<S: Into<String>>(mut self, actions: impl IntoIterator<Item = S>) -> Self {
        self.actions.extend(actions.into_iter().map(Into::into));
        self
    }

    /// Adds a resource: a literal ARN (`"*"` for all) or an output such as `images.arn().join("/*")`.
    pub fn resource(mut self, arn: impl Into<Value<Arn>>) -> Self {
        self.resources.push(arn.into().to_attr());
        self
    }

    /// Adds a service principal (`vmie.amazonaws.com`), for assume-role policies.
    pub fn service_principal(mut self, service: impl Into<String>) -> Self {
        self.principals.entry("Service".into()).or_default().push(service.into());
        self
    }

    /// Adds an AWS principal (an account or role ARN), for assume-role policies.
    pub fn aws_principal(mut self, arn: impl Into<String>) -> Self {
        self.principals.entry("AWS".into()).or_default().push(arn.into());
        self
    }

    /// Adds a condition: `operator` (`StringEquals`), `key` (`sts:ExternalId`) and a value (literal or output).
    pub fn condition(mut self, operator: &str, key: &str, value: impl Into<Value<String>>) -> Self {
        self.conditions.entry(operator.into()).or_default().entry(key.into()).or_default().push(value.into().to_attr());
        self
    }

    fn to_attr(&self) -> Attr {
        let mut map = BTreeMap::new();
        if let Some(sid) = &self.sid {
            map.insert("Sid".into(), Attr::str(sid));
        }
        let effect = match self.effect {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        };
        map.insert("Effect".into(), Attr::str(effect));
        map.insert("Action".into(), Attr::List(self.actions.iter().map(Attr::str).collect()));
        if !self.resources.is_empty() {
            map.insert("Resource".into(), Attr::List(self.resources.clone()));
        }
        if !self.principals.is_empty() {
            let p = self.principals.iter().map(|(k, v)| (k.clone(), Attr::List(v.iter().map(Attr::str).collect())));
            map.insert("Principal".into(), Attr::Map(p.collect()));
        }
        if !self.conditions.is_empty() {
            let c = self.conditions.iter().map(|(op, keys)| {
                (op.clone(), Attr::Map(keys.iter().map(|(k, v)| (k.clone(), Attr::List(v.clone()))).collect()))
            });
            map.insert("Condition".into(), Attr::Map(c.collect()));
        }
        Attr::Map(map)
    }

    fn validate(&self, field: &str, index: usize, v: &mut Validator<'_>) {
        let at = format!("{field}.Statement[{index}]");
        if self.actions.is_empty() {
            v.error(format!("{at}.Action"), "a statement needs at least one action");
        }
        for action in &self.actions {
            let ok = action == "*"
                || action.split_once(':').is_some_and(|(svc, name)| {
                    !svc.is_empty()
                        && !name.is_empty()
                        && svc.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                });
            if !ok {
                v.error(
                    format!("{at}.Action"),
                    format!("{action:?} is not an action like `s3:GetObject` or `ec2:Describe*`"),
                );
            }
        }
        for resource in &self.resources {
            if let Attr::Str(arn) = resource {
                v.check(format!("{at}.Resource"), validate::arn(arn));
            }
        }
    }
}

/// An IAM policy document.
///
/// ```
/// use paranix::prelude::*;
/// let mut stack = Stack::new("images");
/// let images = stack.add(s3::Bucket::new("images").bucket("example-images"));
/// let read_images = iam::PolicyDocument::new().statement(
///     iam::Statement::allow()
///         .actions(["s3:GetObject", "s3:ListBucket"])
///         .resource(images.arn())
///         .resource(images.arn().join("/*")),
/// );
/// ```
#[derive(Clone, Debug, Default)]
pub struct PolicyDocument {
    version: Option<String>,
    statements: Vec<Statement>,
}

impl PolicyDocument {
    /// An empty document (version 2012-10-17).
    pub fn new() -> Self {
        PolicyDocument::default()
    }

    /// Sets the policy language version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Adds a statement.
    pub fn statement(mut self, statement: Statement) -> Self {
        self.statements.push(statement);
        self
    }

    /// The document as an attribute tree (JSON policy shape), references unresolved.
    pub fn to_attr(&self) -> Attr {
        Attr::Map(BTreeMap::from([
            ("Version".into(), Attr::str(self.version.as_deref().unwrap_or(POLICY_VERSION))),
            ("Statement".into(), Attr::List(self.statements.iter().map(Statement::to_attr).collect())),
        ]))
    }

    fn validate(&self, field: &str, v: &mut Validator<'_>) {
        if self.statements.is_empty() {
            v.error(field, "a policy document needs at least one statement");
        }
        if let Some(version) = &self.version
            && version != POLICY_VERSION
            && version != "2008-10-17"
        {
            v.error(
                format!("{field}.Version"),
                format!("{version:?} is not a policy version (2012-10-17 or 2008-10-17)"),
            );
        }
        for (i, s) in self.statements.iter().enumerate() {
            s.validate(field, i, v);
        }
    }
}

/// The canonical form of a policy document (as built, or as parsed from AWS's JSON): version filled in,
/// single values turned into sorted lists without duplicates, statements sorted. Two documents mean the same
/// exactly when their canonical forms are equal.
pub fn canonical(doc: &Attr) -> Attr {
    let Attr::Map(map) = doc else { return doc.clone() };
    let mut out = BTreeMap::new();
    out.insert("Version".to_owned(), map.get("Version").cloned().unwrap_or_else(|| Attr::str(POLICY_VERSION)));
    let statements = match map.get("Statement") {
        Some(Attr::List(items)) => items.clone(),
        Some(single @ Attr::Map(_)) => vec![single.clone()],
        _ => Vec::new(),
    };
    let mut statements: Vec<Attr> = statements.iter().map(canonical_statement).collect();
    statements.sort_by(sort_key);
    statements.dedup();
    out.insert("Statement".to_owned(), Attr::List(statements));
    for (k, v) in map {
        if k != "Version" && k != "Statement" {
            out.insert(k.clone(), v.clone());
        }
    }
    Attr::Map(out)
}

fn canonical_statement(statement: &Attr) -> Attr {
    let Attr::Map(map) = statement else { return statement.clone() };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let value = match k.as_str() {
            "Action" | "NotAction" | "Resource" | "NotResource" => sorted_list(v),
            "Principal" | "NotPrincipal" => match v {
                Attr::Map(p) => Attr::Map(p.iter().map(|(k, v)| (k.clone(), sorted_list(v))).collect()),
                other => other.clone(),
            },
            "Condition" => match v {
                Attr::Map(ops) => Attr::Map(
                    ops.iter()
                        .map(|(op, keys)| {
                            let keys = match keys {
                                Attr::Map(keys) => {
                                    Attr::Map(keys.iter().map(|(k, v)| (k.clone(), sorted_list(v))).collect())
                                }
                                other => other.clone(),
                            };
                            (op.clone(), keys)
                        })
                        .collect(),
                ),
                other => other.clone(),
            },
            _ => v.clone(),
        };
        out.insert(k.clone(), value);
    }
    Attr::Map(out)
}

fn sorted_list(value: &Attr) -> Attr {
    let mut items = match value {
        Attr::List(items) => items.clone(),
        single => vec![single.clone()],
    };
    items.sort_by(sort_key);
    items.dedup();
    Attr::List(items)
}

/// An IAM role (the seed's `vmimport` service role, or an instance role).
#[derive(Clone, Debug)]
pub struct Role {
    name: String,
    role_name: Option<String>,
    path: String,
    description: Option<String>,
    assume_role_policy: Option<PolicyDocument>,
    max_session_duration: i64,
    tags: BTreeMap<String, String>,
    lifecycle: Lifecycle,
}

static ROLE_FIELDS: [Field; 6] = [
    Field::new("assume_role_policy").compare(Compare::PolicyDocument),
    Field::new("description"),
    Field::new("max_session_duration"),
    Field::new("name").force_new(),
    Field::new("path").force_new(),
    Field::new("tags"),
];

static ROLE_OUTPUTS: [OutputField; 2] = [OutputField::new("arn"), OutputField::new("role_id")];

/// The schema of [`Role`].
pub static ROLE: Schema = Schema {
    kind: "aws_iam_role",
    mode: Mode::Managed,
    fields: &ROLE_FIELDS,
    outputs: &ROLE_OUTPUTS,
    id: Some("name"),
    predict: crate::schema::predict_nothing,
    open_outputs: false,
};

impl Role {
    /// A role with logical name `name`; its IAM name defaults to `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Role {
            name: name.into(),
            role_name: None,
            path: "/".into(),
            description: None,
            assume_role_policy: None,
            max_session_duration: 3600,
            tags: BTreeMap::new(),
            lifecycle: Lifecycle::default(),
        }
    }

    /// The IAM role name (changing it replaces the role).
    pub fn role_name(mut self, role_name: impl Into<String>) -> Self {
        self.role_name = Some(role_name.into());
        self
    }

    /// The IAM path (`/` by default).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// A description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Who may assume the role (required).
    pub fn assume_role_policy(mut self, policy: PolicyDocument) -> Self {
        self.assume_role_policy = Some(policy);
        self
    }

    /// Maximum session duration in seconds (3600 to 43200).
    pub fn max_session_duration(mut self, seconds: i64) -> Self {
        self.max_session_duration = seconds;
        self
    }

    tag_methods!();

    fn iam_name(&self) -> String {
        self.role_name.clone().unwrap_or_else(|| self.name.clone())
    }
}

impl Resource for Role {
    fn schema() -> &'static Schema {
        &ROLE
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Attrs {
        Attrs::from([
            ("assume_role_policy".into(), self.assume_role_policy.as_ref().map_or(Attr::Null, PolicyDocument::to_attr)),
            ("description".into(), self.description.clone().map_or(Attr::Null, Attr::Str)),
            ("max_session_duration".into(), Attr::Int(self.max_session_duration)),
            ("name".into(), Attr::Str(self.iam_name())),
            ("path".into(), Attr::str(&self.path)),
            ("tags".into(), tags_attr(&self.tags)),
        ])
    }

    fn validate(&self, v: &mut Validator<'_>) {
        let name = self.iam_name();
        if name.is_empty()
            || name.len() > 64
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        {
            v.error("name", format!("{name:?} is not an IAM role name (1 to 64 of letters, digits and +=,.@_-)"));
        }
        if !(self.path.starts_with('/') && self.path.ends_with('/')) {
            v.error("path", format!("{:?} must start and end with `/`", self.path));
        }
        if !(3600..=43_200).contains(&self.max_session_duration) {
            v.error("max_session_duration", format!("{} is outside 3600..=43200 seconds", self.max_session_duration));
        }
        match &self.assume_role_policy {
            None => v.error("assume_role_policy", "required: who may assume the role"),
            Some(doc) => doc.validate("assume_role_policy", v),
        }
        v.check("tags", validate::tags(&self.tags));
    }

    lifecycle_methods!();
}

impl Handle<Role> {
    /// The role's ARN.
    pub fn arn(&self) -> Output<Arn> {
        self.attribute("arn")
    }

    /// The role's IAM name.
    pub fn name(&self) -> Output<RoleName> {
        self.attribute("name")
    }
}

/// An inline policy attached to a role.
#[derive(Clone, Debug)]
pub struct RolePolicy {
    name: String,
    policy_name: Option<String>,
    role: Option<Value<RoleName>>,
    policy: Option<PolicyDocument>,
    lifecycle: Lifecycle,
}

static ROLE_POLICY_FIELDS: [Field; 3] = [
    Field::new("name").force_new(),
    Field::new("policy").compare(Compare::PolicyDocument),
    Field::new("role").force_new(),
];

/// The schema of [`RolePolicy`].
pub static ROLE_POLICY: Schema = Schema {
    kind: "aws_iam_role_policy",
    mode: Mode::Managed,
    fields: &ROLE_POLICY_FIELDS,
    outputs: &[],
    id: Some("name"),
    predict: crate::schema::predict_nothing,
    open_outputs: false,
};

impl RolePolicy {
    /// An inline policy with logical name `name`; its IAM name defaults to `name`.
    pub fn new(name: impl Into<String>) -> Self {
        RolePolicy { name: name.into(), policy_name: None, role: None, policy: None, lifecycle: Lifecycle::default() }
    }

    /// The policy's name within the role.
    pub fn policy_name(mut self, name: impl Into<String>) -> Self {
        self.policy_name = Some(name.into());
        self
    }

    /// The role it belongs to (usually `role.name()`).
    pub fn role(mut self, role: impl Into<Value<RoleName>>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// The policy document.
    pub fn policy(mut self, policy: PolicyDocument) -> Self {
        self.policy = Some(policy);
        self
    }
}

impl Resource for RolePolicy {
    fn schema() -> &'static Schema {
        &ROLE_POLICY
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Attrs {
        Attrs::from([
            ("name".into(), Attr::Str(self.policy_name.clone().unwrap_or_else(|| self.name.clone()))),
            ("policy".into(), self.policy.as_ref().map_or(Attr::Null, PolicyDocument::to_attr)),
            ("role".into(), self.role.as_ref().map_or(Attr::Null, Value::to_attr)),
        ])
    }

    fn validate(&self, v: &mut Validator<'_>) {
        if self.role.is_none() {
            v.error("role", "required: the role the policy is attached to");
        }
        match &self.policy {
            None => v.error("policy", "required: the policy document"),
            Some(doc) => doc.validate("policy", v),
        }
    }

    lifecycle_methods!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Attr {
        Attr::from_json(&serde_json::from_str(text).expect("json")).expect("attr")
    }

    #[test]
    fn reordered_statements_actions_and_single_values_are_the_same_policy() {
        let a = json(
            r#"{"Version":"2012-10-17","Statement":[
                {"Effect":"Allow","Action":["s3:ListBucket","s3:GetObject"],"Resource":"arn:aws:s3:::images"},
                {"Effect":"Allow","Action":"ec2:Describe*","Resource":["*"]}]}"#,
        );
        let b = json(
            r#"{"Statement":[
                {"Resource":["*"],"Effect":"Allow","Action":["ec2:Describe*"]},
                {"Action":["s3:GetObject","s3:ListBucket","s3:GetObject"],"Effect":"Allow","Resource":["arn:aws:s3:::images"]}]}"#,
        );
        assert_eq!(canonical(&a), canonical(&b));
    }

    #[test]
    fn a_different_action_is_a_different_policy() {
        let a = json(r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#);
        let b = json(r#"{"Statement":[{"Effect":"Allow","Action":"s3:PutObject","Resource":"*"}]}"#);
        assert_ne!(canonical(&a), canonical(&b));
    }

    #[test]
    fn built_documents_canonicalise_like_parsed_ones() {
        let built = PolicyDocument::new()
            .statement(Statement::allow().service_principal("vmie.amazonaws.com").action("sts:AssumeRole").condition(
                "StringEquals",
                "sts:Externalid",
                "vmimport",
            ))
            .to_attr();
        let parsed = json(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Service":"vmie.amazonaws.com"},
                "Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:Externalid":"vmimport"}}}}"#,
        );
        assert_eq!(canonical(&built), canonical(&parsed));
    }
}

pub(crate) mod provider;
