//! [`Address`]: the stable key (`aws_s3_bucket.images`) shared by the graph, the state and the plan.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};

/// Whether an address names a managed resource or a data source (`data.` prefix, read-only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Created, updated and deleted by paranix.
    Managed,
    /// Only read (e.g. [`RemoteState`](crate::stack::RemoteState)).
    Data,
}

/// A resource's address within its stack: kind plus logical name, e.g. `aws_instance.printerfacts`.
///
/// Addresses are stable across runs: they key the state, so renaming a resource plans a delete and a create.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    mode: Mode,
    kind: String,
    name: String,
}

impl Address {
    /// The address of a managed resource.
    pub fn managed(kind: &str, name: &str) -> Self {
        Address { mode: Mode::Managed, kind: kind.to_owned(), name: name.to_owned() }
    }

    /// The address of a data source (rendered with a `data.` prefix).
    pub fn data(kind: &str, name: &str) -> Self {
        Address { mode: Mode::Data, kind: kind.to_owned(), name: name.to_owned() }
    }

    /// Managed resource or data source.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The resource kind, e.g. `aws_s3_bucket`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The logical name given in the program, e.g. `images`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks the logical name: letters, digits, `_` and `-`, starting with a letter or `_`.
    pub(crate) fn validate_name(name: &str) -> Result<(), String> {
        crate::aws::catalog::check_name(name)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mode == Mode::Data {
            f.write_str("data.")?;
        }
        write!(f, "{}.{}", self.kind, self.name)
    }
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let (mode, rest) = match s.strip_prefix("data.") {
            Some(rest) => (Mode::Data, rest),
            None => (Mode::Managed, s),
        };
        let bad = || Error::new(ErrorKind::Usage, format!("{s:?} is not an address like `aws_s3_bucket.images`"));
        let (kind, name) = rest.split_once('.').ok_or_else(bad)?;
        if kind.is_empty() || Address::validate_name(name).is_err() {
            return Err(bad());
        }
        Ok(Address { mode, kind: kind.to_owned(), name: name.to_owned() })
    }
}

impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_text() {
        for text in ["aws_s3_bucket.images", "data.remote_state.aws_image", "aws_instance.web-1"] {
            let a: Address = text.parse().expect("valid address");
            assert_eq!(a.to_string(), text);
        }
        assert!("nodot".parse::<Address>().is_err());
        assert!("aws_instance.1web".parse::<Address>().is_err());
    }
}
