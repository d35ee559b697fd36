//! Field checks shared by the AWS builders. Each returns `Err(message)` saying what is wrong and what is
//! allowed; builders attach the resource address and field name.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// S3 bucket naming rules (general purpose buckets).
pub(crate) fn bucket_name(name: &str) -> Result<(), String> {
    let len = name.len();
    if !(3..=63).contains(&len) {
        return Err(format!("bucket name {name:?} must be 3 to 63 characters long (it has {len})"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-')) {
        return Err(format!("bucket name {name:?} contains {c:?}; use lowercase letters, digits, `.` and `-`"));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge_ok(name.chars().next()) || !edge_ok(name.chars().last()) {
        return Err(format!("bucket name {name:?} must start and end with a letter or digit"));
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Err(format!("bucket name {name:?} must not contain `..`, `.-` or `-.`"));
    }
    if name.parse::<Ipv4Addr>().is_ok() {
        return Err(format!("bucket name {name:?} must not look like an IP address"));
    }
    if name.starts_with("xn--")
        || name.starts_with("sthree-")
        || name.ends_with("-s3alias")
        || name.ends_with("--ol-s3")
    {
        return Err(format!("bucket name {name:?} uses a prefix or suffix reserved by S3"));
    }
    Ok(())
}

/// An IPv4 CIDR block like `10.0.0.0/16`.
pub(crate) fn cidr_v4(cidr: &str) -> Result<(), String> {
    let (ip, len) = cidr.split_once('/').ok_or_else(|| format!("{cidr:?} is not a CIDR block like 10.0.0.0/16"))?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| format!("{cidr:?}: {ip:?} is not an IPv4 address"))?;
    let len: u8 =
        len.parse().ok().filter(|l| *l <= 32).ok_or_else(|| format!("{cidr:?}: prefix length must be 0 to 32"))?;
    let host_bits = u32::from(ip) & u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
    if host_bits != 0 {
        return Err(format!(
            "{cidr:?} has host bits set; did you mean {}/{len}?",
            Ipv4Addr::from(u32::from(ip) & !u32::MAX.checked_shr(u32::from(len)).unwrap_or(0))
        ));
    }
    Ok(())
}

/// An IPv6 CIDR block like `::/0`.
pub(crate) fn cidr_v6(cidr: &str) -> Result<(), String> {
    let (ip, len) =
        cidr.split_once('/').ok_or_else(|| format!("{cidr:?} is not an IPv6 CIDR block like 2001:db8::/32"))?;
    ip.parse::<Ipv6Addr>().map_err(|_| format!("{cidr:?}: {ip:?} is not an IPv6 address"))?;
    len.parse::<u8>().ok().filter(|l| *l <= 128).ok_or_else(|| format!("{cidr:?}: prefix length must be 0 to 128"))?;
    Ok(())
}

/// AWS tag limits: at most 50 tags, keys 1 to 128 characters, values up to 256, `aws:` and `paranix:`
/// reserved.
pub(crate) fn tags(tags: &BTreeMap<String, String>) -> Result<(), String> {
    use super::catalog::{MAX_USER_TAGS, check_tag};
    if tags.len() > MAX_USER_TAGS {
        return Err(format!(
            "{} tags given; paranix adds `paranix:stack` and `paranix:address`, so at most {MAX_USER_TAGS}",
            tags.len()
        ));
    }
    tags.iter().try_for_each(|(k, v)| check_tag(k, v))
}

/// An ARN (`arn:partition:service:region:account:resource`) or `*`, possibly with wildcards in the resource.
pub(crate) fn arn(value: &str) -> Result<(), String> {
    if value == "*" {
        return Ok(());
    }
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[1].is_empty() || parts[2].is_empty() || parts[5].is_empty() {
        return Err(format!("{value:?} is not an ARN like arn:aws:s3:::bucket/*"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3_rules() {
        for good in ["images", "paranix-state-123", "a.b.c"] {
            assert!(bucket_name(good).is_ok(), "{good}");
        }
        for bad in ["ab", "Images", "-images", "images-", "a..b", "192.168.1.1", "xn--abc", "has_underscore"] {
            assert!(bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs_are_checked_for_syntax_range_and_host_bits() {
        assert!(cidr_v4("0.0.0.0/0").is_ok());
        assert!(cidr_v4("10.1.0.0/16").is_ok());
        assert!(cidr_v4("10.1.0.1/16").expect_err("host bits").contains("10.1.0.0/16"));
        assert!(cidr_v4("10.1.0.0/33").is_err());
        assert!(cidr_v4("10.1.0.0").is_err());
        assert!(cidr_v4("300.1.0.0/8").is_err());
        assert!(cidr_v6("::/0").is_ok());
        assert!(cidr_v6("2001:db8::/129").is_err());
    }

    #[test]
    fn arns_need_six_parts() {
        assert!(arn("arn:aws:s3:::images/*").is_ok());
        assert!(arn("*").is_ok());
        assert!(arn("arn:aws:s3").is_err());
        assert!(arn("images").is_err());
    }
}
