//! [`Attr`]: the dynamic value tree the planner diffs, the state stores and providers read.
//!
//! Typed builders ([`crate::aws`]) turn their fields into `Attr` trees; references to other resources stay in
//! the tree as [`Attr::Ref`] until the planner (or, at apply time, the executor) can resolve them. A value
//! that only the cloud can tell (an instance id before creation) is [`Attr::Unknown`]. Both render as
//! `(known after apply)`.
//!
//! In JSON (state files, plan files, `--json`) an `Attr` is plain JSON except for three special leaves, whose
//! keys start with `$` (a character AWS tag keys and attribute names never contain):
//! `{"$ref": "${aws_s3_bucket.images.arn}/*"}` (a reference not yet resolved, in interpolation syntax),
//! `{"$unknown": true}` (computed by the cloud), `{"$sensitive": true}` (a redacted sensitive value).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::address::Address;

/// A map of attribute name to value: a resource's inputs or outputs.
pub type Attrs = BTreeMap<String, Attr>;

/// One output attribute of one resource, e.g. `aws_s3_bucket.images.arn`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    /// The resource the value comes from.
    pub address: Address,
    /// The attribute of that resource (an output like `arn`, or an input like `bucket`).
    pub attribute: String,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.address, self.attribute)
    }
}

/// A piece of an [`Expr`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// Literal text.
    Lit(String),
    /// The value of another resource's attribute.
    Ref(Reference),
}

/// A value computed from other resources' attributes: one reference, or text with references spliced in
/// (`images.arn().join("/*")`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expr {
    parts: Vec<Part>,
}

impl Expr {
    /// An expression that is exactly one reference.
    pub fn reference(address: Address, attribute: &str) -> Self {
        Expr { parts: vec![Part::Ref(Reference { address, attribute: attribute.to_owned() })] }
    }

    /// The expression followed by literal text.
    pub fn join(mut self, text: &str) -> Self {
        match self.parts.last_mut() {
            Some(Part::Lit(last)) => last.push_str(text),
            _ => self.parts.push(Part::Lit(text.to_owned())),
        }
        self
    }

    /// Literal text followed by the expression.
    pub fn prepend(mut self, text: &str) -> Self {
        match self.parts.first_mut() {
            Some(Part::Lit(first)) => first.insert_str(0, text),
            _ => self.parts.insert(0, Part::Lit(text.to_owned())),
        }
        self
    }

    /// The pieces, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Every reference in the expression.
    pub fn references(&self) -> impl Iterator<Item = &Reference> {
        self.parts.iter().filter_map(|p| match p {
            Part::Ref(r) => Some(r),
            Part::Lit(_) => None,
        })
    }

    /// Resolves the expression with `lookup`; `None` while any reference is still unknown.
    ///
    /// A single reference keeps the referenced value's type (a number stays a number); anything with text
    /// around it becomes a string.
    pub fn resolve(&self, lookup: &mut dyn FnMut(&Reference) -> Option<Attr>) -> Option<Attr> {
        if let [Part::Ref(r)] = self.parts.as_slice() {
            return lookup(r).filter(Attr::is_known);
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Ref(r) => match lookup(r)? {
                    Attr::Str(s) => out.push_str(&s),
                    Attr::Int(i) => out.push_str(&i.to_string()),
                    Attr::Bool(b) => out.push_str(&b.to_string()),
                    _ => return None,
                },
            }
        }
        Some(Attr::Str(out))
    }
}

impl fmt::Display for Expr {
    /// Interpolation syntax: `${aws_s3_bucket.images.arn}/*`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Lit(s) => f.write_str(s)?,
                Part::Ref(r) => write!(f, "${{{r}}}")?,
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Expr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Lit(rest[..start].to_owned()));
            }
            let end = rest[start..].find('}').ok_or_else(|| format!("unclosed `${{` in {s:?}"))? + start;
            let inner = &rest[start + 2..end];
            let (addr, attribute) = inner.rsplit_once('.').ok_or_else(|| format!("bad reference {inner:?}"))?;
            let address: Address = addr.parse().map_err(|e: crate::Error| e.to_string())?;
            parts.push(Part::Ref(Reference { address, attribute: attribute.to_owned() }));
            rest = &rest[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_owned()));
        }
        if !parts.iter().any(|p| matches!(p, Part::Ref(_))) {
            return Err(format!("{s:?} holds no reference"));
        }
        Ok(Expr { parts })
    }
}

/// A dynamic attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    /// No value.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer (ports, sizes, counts).
    Int(i64),
    /// A string.
    Str(String),
    /// An ordered list.
    List(Vec<Attr>),
    /// A map with sorted keys.
    Map(BTreeMap<String, Attr>),
    /// A value that depends on other resources and is not resolved yet.
    Ref(Expr),
    /// A value only the cloud knows until the resource exists.
    Unknown,
    /// A sensitive value, redacted for display and for plan files.
    Sensitive,
}

impl Attr {
    /// A string attribute.
    pub fn str(s: impl Into<String>) -> Self {
        Attr::Str(s.into())
    }

    /// True if the tree holds no [`Attr::Ref`] and no [`Attr::Unknown`] anywhere.
    pub fn is_known(&self) -> bool {
        match self {
            Attr::Ref(_) | Attr::Unknown => false,
            Attr::List(items) => items.iter().all(Attr::is_known),
            Attr::Map(map) => map.values().all(Attr::is_known),
            _ => true,
        }
    }

    /// True if the tree holds an unresolved reference (as opposed to a value a provider computes).
    pub fn has_refs(&self) -> bool {
        match self {
            Attr::Ref(_) => true,
            Attr::List(items) => items.iter().any(Attr::has_refs),
            Attr::Map(map) => map.values().any(Attr::has_refs),
            _ => false,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Attr::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Attr::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Attr::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The list items, if this is a list.
    pub fn as_list(&self) -> Option<&[Attr]> {
        match self {
            Attr::List(items) => Some(items),
            _ => None,
        }
    }

    /// The map, if this is one.
    pub fn as_map(&self) -> Option<&BTreeMap<String, Attr>> {
        match self {
            Attr::Map(map) => Some(map),
            _ => None,
        }
    }

    /// Calls `f` on every reference in the tree.
    pub fn visit_refs(&self, f: &mut dyn FnMut(&Reference)) {
        match self {
            Attr::Ref(expr) => expr.references().for_each(f),
            Attr::List(items) => items.iter().for_each(|a| a.visit_refs(f)),
            Attr::Map(map) => map.values().for_each(|a| a.visit_refs(f)),
            _ => {}
        }
    }

    /// Replaces every reference `lookup` can answer with its value; unanswered references stay.
    pub fn resolve(&self, lookup: &mut dyn FnMut(&Reference) -> Option<Attr>) -> Attr {
        match self {
            Attr::Ref(expr) => expr.resolve(lookup).unwrap_or_else(|| self.clone()),
            Attr::List(items) => Attr::List(items.iter().map(|a| a.resolve(lookup)).collect()),
            Attr::Map(map) => Attr::Map(map.iter().map(|(k, v)| (k.clone(), v.resolve(lookup))).collect()),
            other => other.clone(),
        }
    }

    /// Converts to JSON, with the special leaves described in the module docs.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Attr::Null => J::Null,
            Attr::Bool(b) => J::Bool(*b),
            Attr::Int(i) => J::from(*i),
            Attr::Str(s) => J::String(s.clone()),
            Attr::List(items) => J::Array(items.iter().map(Attr::to_json).collect()),
            Attr::Map(map) => J::Object(map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
            Attr::Ref(expr) => serde_json::json!({ "$ref": expr.to_string() }),
            Attr::Unknown => serde_json::json!({ "$unknown": true }),
            Attr::Sensitive => serde_json::json!({ "$sensitive": true }),
        }
    }

    /// Converts from JSON; the inverse of [`Attr::to_json`]. Floats are rejected (no AWS field we model has one).
    pub fn from_json(value: &serde_json::Value) -> Result<Attr, String> {
        use serde_json::Value as J;
        Ok(match value {
            J::Null => Attr::Null,
            J::Bool(b) => Attr::Bool(*b),
            J::Number(n) => Attr::Int(n.as_i64().ok_or_else(|| format!("{n} is not an integer"))?),
            J::String(s) => Attr::Str(s.clone()),
            J::Array(items) => Attr::List(items.iter().map(Attr::from_json).collect::<Result<_, _>>()?),
            J::Object(map) => {
                if map.len() == 1 {
                    if let Some(J::String(text)) = map.get("$ref") {
                        return Ok(Attr::Ref(text.parse()?));
                    }
                    if map.contains_key("$unknown") {
                        return Ok(Attr::Unknown);
                    }
                    if map.contains_key("$sensitive") {
                        return Ok(Attr::Sensitive);
                    }
                }
                Attr::Map(map.iter().map(|(k, v)| Ok((k.clone(), Attr::from_json(v)?))).collect::<Result<_, String>>()?)
            }
        })
    }
}

impl Serialize for Attr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Attr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Attr::from_json(&value).map_err(serde::de::Error::custom)
    }
}

impl From<&str> for Attr {
    fn from(s: &str) -> Self {
        Attr::Str(s.to_owned())
    }
}

impl From<String> for Attr {
    fn from(s: String) -> Self {
        Attr::Str(s)
    }
}

impl From<bool> for Attr {
    fn from(b: bool) -> Self {
        Attr::Bool(b)
    }
}

impl From<i64> for Attr {
    fn from(i: i64) -> Self {
        Attr::Int(i)
    }
}

impl<T: Into<Attr>> From<Vec<T>> for Attr {
    fn from(items: Vec<T>) -> Self {
        Attr::List(items.into_iter().map(Into::into).collect())
    }
}

impl<T: Into<Attr>> From<BTreeMap<String, T>> for Attr {
    fn from(map: BTreeMap<String, T>) -> Self {
        Attr::Map(map.into_iter().map(|(k, v)| (k, v.into())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_leaves_round_trip_through_json() {
        let expr = Expr::reference(Address::managed("aws_s3_bucket", "images"), "arn").join("/*");
        let tree = Attr::Map(BTreeMap::from([
            ("a".to_owned(), Attr::Ref(expr.clone())),
            ("b".to_owned(), Attr::Unknown),
            ("c".to_owned(), Attr::Sensitive),
            ("d".to_owned(), Attr::List(vec![Attr::Int(3), Attr::Null, Attr::Bool(true)])),
        ]));
        let json = tree.to_json();
        assert_eq!(json["a"]["$ref"], "${aws_s3_bucket.images.arn}/*");
        assert_eq!(Attr::from_json(&json).expect("round trip"), tree);
    }

    #[test]
    fn a_single_reference_keeps_its_type_and_templates_become_strings() {
        let addr = Address::managed("aws_instance", "web");
        let single = Expr::reference(addr.clone(), "port");
        let templ = Expr::reference(addr, "port").join("/tcp");
        let mut lookup = |_: &Reference| Some(Attr::Int(22));
        assert_eq!(single.resolve(&mut lookup), Some(Attr::Int(22)));
        assert_eq!(templ.resolve(&mut lookup), Some(Attr::str("22/tcp")));
        assert_eq!(templ.resolve(&mut |_| None), None);
    }
}
