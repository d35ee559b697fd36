//! Paranoid checks: security warnings about the configuration, found at plan time, each with the resource
//! address, the field, and a fix. `--deny-warnings` turns them into errors.

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::attr::{Attr, Attrs};

/// A security warning about one field of one resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// The resource.
    pub address: Address,
    /// The field, as in `ingress[0]`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: `{}`: {}. Fix: {}", self.address, self.field, self.message, self.fix)
    }
}

/// Ports that administer a host, which the internet should never reach directly.
const ADMIN_PORTS: [(i64, &str); 2] = [(22, "SSH"), (3389, "RDP")];
const WORLD: [&str; 2] = ["0.0.0.0/0", "::/0"];

/// The warnings about one declared resource, from its resolved inputs. `state_buckets` are the buckets that
/// hold stack state (they must be versioned).
pub(crate) fn check(address: &Address, inputs: &Attrs, state_buckets: &[String]) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let mut warn = |field: &str, message: String, fix: &str| {
        warnings.push(Warning { address: address.clone(), field: field.to_owned(), message, fix: fix.to_owned() });
    };
    let map = |name: &str| inputs.get(name).and_then(Attr::as_map);
    match address.kind() {
        "aws_security_group" => {
            for (i, rule) in inputs.get("ingress").and_then(Attr::as_list).unwrap_or_default().iter().enumerate() {
                let Some(rule) = rule.as_map() else { continue };
                let cidrs: Vec<&str> = ["cidr_blocks", "ipv6_cidr_blocks"]
                    .iter()
                    .flat_map(|f| rule.get(*f).and_then(Attr::as_list).unwrap_or_default())
                    .filter_map(Attr::as_str)
                    .filter(|c| WORLD.contains(c))
                    .collect();
                if cidrs.is_empty() {
                    continue;
                }
                let protocol = rule.get("protocol").and_then(Attr::as_str).unwrap_or("-1");
                let from = rule.get("from_port").and_then(Attr::as_int).unwrap_or(0);
                let to = rule.get("to_port").and_then(Attr::as_int).unwrap_or(0);
                let everything = protocol == "-1" || (from <= 0 && to >= 65_535);
                let admin = ADMIN_PORTS.iter().find(|(port, _)| protocol == "tcp" && from <= *port && *port <= to);
                if everything {
                    warn(
                        &format!("ingress[{i}]"),
                        format!("opens every port to the whole internet ({})", cidrs.join(", ")),
                        "allow only the ports the service needs",
                    );
                } else if let Some((port, name)) = admin {
                    warn(
                        &format!("ingress[{i}]"),
                        format!("opens {name} (port {port}) to the whole internet ({})", cidrs.join(", ")),
                        "narrow `cidr_blocks` to the addresses that administer the host, or reach it over a VPN such as tailscale",
                    );
                }
            }
        }
        "aws_s3_bucket" => {
            let blocked = map("public_access_block").is_some_and(|m| m.values().all(|v| *v == Attr::Bool(true)));
            if !blocked {
                warn(
                    "public_access_block",
                    "the bucket can be made public".into(),
                    "keep the public access block on (the default)",
                );
            }
            if inputs.get("encryption").is_none_or(|e| *e == Attr::Null) {
                warn(
                    "encryption",
                    "objects are not encrypted by default".into(),
                    "keep default encryption on (the default)",
                );
            }
            let name = inputs.get("bucket").and_then(Attr::as_str).unwrap_or_default();
            if state_buckets.iter().any(|b| b == name) && inputs.get("versioning") != Some(&Attr::Bool(true)) {
                warn(
                    "versioning",
                    "it holds stack state but keeps no old versions: a bad write cannot be undone".into(),
                    "set `versioning(true)`",
                );
            }
        }
        "aws_instance" => {
            let tokens = map("metadata_options").and_then(|m| m.get("http_tokens")).and_then(Attr::as_str);
            if tokens != Some("required") {
                warn(
                    "metadata_options.http_tokens",
                    "IMDSv1 is allowed: any SSRF on the host can read its credentials".into(),
                    "require IMDSv2 (the default; remove `allow_imds_v1()`)",
                );
            }
            if map("root_block_device").and_then(|m| m.get("encrypted")) == Some(&Attr::Bool(false)) {
                warn(
                    "root_block_device.encrypted",
                    "the root volume is not encrypted".into(),
                    "encrypt it (the default)",
                );
            }
        }
        "aws_ami" if inputs.get("imds_support").is_none_or(|v| *v == Attr::Null) => {
            warn(
                "imds_support",
                "instances launched from the image allow IMDSv1".into(),
                "register it with IMDS v2.0 (the default; remove `allow_imds_v1()`)",
            );
        }
        "aws_iam_role" | "aws_iam_role_policy" => {
            for field in ["policy", "assume_role_policy"] {
                if let Some(doc) = inputs.get(field)
                    && grants_everything(doc)
                {
                    warn(
                        field,
                        "a statement allows every action (`*`) on every resource (`*`)".into(),
                        "list the actions and resources the role needs",
                    );
                }
            }
        }
        _ => {}
    }
    warnings
}

fn grants_everything(doc: &Attr) -> bool {
    let statements = match doc.as_map().and_then(|m| m.get("Statement")) {
        Some(Attr::List(items)) => items.clone(),
        Some(single @ Attr::Map(_)) => vec![single.clone()],
        _ => return false,
    };
    let has_star = |v: Option<&Attr>| match v {
        Some(Attr::Str(s)) => s == "*",
        Some(Attr::List(items)) => items.iter().any(|i| i.as_str() == Some("*")),
        _ => false,
    };
    statements.iter().filter_map(Attr::as_map).any(|s| {
        s.get("Effect").and_then(Attr::as_str) == Some("Allow")
            && has_star(s.get("Action"))
            && has_star(s.get("Resource"))
    })
}
