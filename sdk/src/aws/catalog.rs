// The limits paranix checks input against: resource names, AWS tags, EC2 instance types and root volumes.
// One file, read by the SDK's run-time validation and by the `#[host]` attribute's compile-time checks
// (`paranix-macros` includes it with `include!`, as a proc-macro crate cannot depend on the SDK), so both
// say the same thing. Plain `std` only.

/// Checks a logical resource name: letters, digits, `_` and `-`, starting with a letter or `_`.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("the name is empty".into()),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
            return Err(format!("the name {name:?} must start with a letter or `_`"));
        }
        _ => {}
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        return Err(format!("the name {name:?} contains {c:?}; use letters, digits, `_` and `-`"));
    }
    Ok(())
}

/// Tags a resource may carry besides paranix's own two (`paranix:stack`, `paranix:address`): AWS allows 50.
pub const MAX_USER_TAGS: usize = 48;

/// Checks one tag against AWS's limits (keys 1 to 128 characters, values up to 256) and the reserved
/// prefixes (`aws:`, `paranix:`).
pub fn check_tag(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() || key.chars().count() > 128 {
        return Err(format!("tag key {key:?} must be 1 to 128 characters"));
    }
    if value.chars().count() > 256 {
        return Err(format!("the value of tag {key:?} is longer than 256 characters"));
    }
    if key.to_ascii_lowercase().starts_with("aws:") || key.starts_with("paranix:") {
        return Err(format!("tag key {key:?} uses a reserved prefix (`aws:`, `paranix:`)"));
    }
    Ok(())
}

/// Instance type families paranix knows (current generations). Sizes are checked against [`INSTANCE_SIZES`].
pub const INSTANCE_FAMILIES: [&str; 40] = [
    "t2", "t3", "t3a", "t4g", "m5", "m5a", "m6a", "m6g", "m6i", "m7a", "m7g", "m7i", "m8g", "c5", "c5a", "c6a", "c6g",
    "c6i", "c7a", "c7g", "c7i", "c8g", "r5", "r5a", "r6a", "r6g", "r6i", "r7a", "r7g", "r7i", "r8g", "i4i", "i4g",
    "g5", "g6", "p4d", "p5", "inf2", "trn1", "x2idn",
];

/// Instance sizes paranix knows.
pub const INSTANCE_SIZES: [&str; 16] = [
    "nano",
    "micro",
    "small",
    "medium",
    "large",
    "xlarge",
    "2xlarge",
    "4xlarge",
    "8xlarge",
    "12xlarge",
    "16xlarge",
    "24xlarge",
    "32xlarge",
    "48xlarge",
    "metal",
    "metal-48xl",
];

/// Checks an instance type like `t3.micro` against the known families and sizes.
pub fn check_instance_type(instance_type: &str) -> Result<(), String> {
    let Some((family, size)) = instance_type.split_once('.') else {
        return Err(format!("{instance_type:?} is not an instance type like `t3.micro`"));
    };
    if !INSTANCE_FAMILIES.contains(&family) {
        return Err(format!(
            "unknown instance family {family:?} in {instance_type:?}; known: {}",
            INSTANCE_FAMILIES.join(", ")
        ));
    }
    if !INSTANCE_SIZES.contains(&size) {
        return Err(format!(
            "unknown instance size {size:?} in {instance_type:?}; known: {}",
            INSTANCE_SIZES.join(", ")
        ));
    }
    Ok(())
}

/// The Nix system an instance type runs: `aarch64-linux` for AWS Graviton families (a `g` right after the
/// generation digit: `t4g`, `m7g`, `i4g`), `x86_64-linux` for everything else.
pub fn instance_nix_system(instance_type: &str) -> &'static str {
    let family = instance_type.split('.').next().unwrap_or_default();
    let after_digits = family.trim_start_matches(|c: char| c.is_ascii_lowercase());
    let suffix = after_digits.trim_start_matches(|c: char| c.is_ascii_digit());
    if after_digits.len() > suffix.len() && suffix.starts_with('g') { "aarch64-linux" } else { "x86_64-linux" }
}

/// EBS volume types an instance can boot from, with their size limits in GiB. (`st1` and `sc1` are
/// throughput-optimised HDD types that EC2 refuses as boot volumes.)
pub const ROOT_VOLUME_TYPES: [(&str, i64, i64); 5] =
    [("gp3", 1, 16_384), ("gp2", 1, 16_384), ("io1", 4, 16_384), ("io2", 4, 65_536), ("standard", 1, 1_024)];

/// Checks a root volume: the type is one of [`ROOT_VOLUME_TYPES`] and the size within its limits. The error
/// names the field (`volume_type` or `volume_size`) and the valid choices.
pub fn check_root_volume(volume_type: &str, size_gib: i64) -> Result<(), (&'static str, String)> {
    let Some(&(_, min, max)) = ROOT_VOLUME_TYPES.iter().find(|(name, _, _)| *name == volume_type) else {
        let names: Vec<&str> = ROOT_VOLUME_TYPES.iter().map(|(name, _, _)| *name).collect();
        let hint = if matches!(volume_type, "st1" | "sc1") { " (HDD types cannot be boot volumes)" } else { "" };
        return Err(("volume_type", format!("{volume_type:?} is not one of {}{hint}", names.join(", "))));
    };
    if !(min..=max).contains(&size_gib) {
        return Err(("volume_size", format!("{size_gib} GiB is outside {min}..={max}, the limits of {volume_type}")));
    }
    Ok(())
}

/// Instance types with less than 2 GiB of memory, in MiB (AWS EC2 User Guide, "Amazon EC2 instance type
/// specifications": t2/t3/t3a/t4g nano 0.5 GiB and micro 1 GiB; the previous-generation t1.micro 0.613 GiB,
/// m1.small and c1.medium 1.7 GiB). Every other type has 2 GiB or more. On these, services that hold large
/// datasets in memory (the ClamAV daemon's signatures: over 1 GiB) do not fit.
pub const SMALL_MEMORY_TYPES: [(&str, u32); 11] = [
    ("t1.micro", 627),
    ("t2.nano", 512),
    ("t2.micro", 1024),
    ("t3.nano", 512),
    ("t3.micro", 1024),
    ("t3a.nano", 512),
    ("t3a.micro", 1024),
    ("t4g.nano", 512),
    ("t4g.micro", 1024),
    ("m1.small", 1740),
    ("c1.medium", 1740),
];

/// The memory of `instance_type` in MiB when it is under 2 GiB (the small types listed here); `None` means 2 GiB
/// or more (or an unknown type).
pub fn small_instance_memory_mib(instance_type: &str) -> Option<u32> {
    SMALL_MEMORY_TYPES.iter().find(|(name, _)| *name == instance_type).map(|(_, mib)| *mib)
}

/// Instance families on the Xen hypervisor rather than the Nitro system (AWS EC2 User Guide, "Instances built
/// on the AWS Nitro System": the rest of the previous generation and t2, m4, c4, r4, x1, x1e, d2, h1, i3, p2,
/// p3, g3, f1). `GetConsoleOutput` with `Latest=true` works only on Nitro instances ("This option is supported
/// on instance types that use the Nitro hypervisor", EC2 API reference); on Xen only the buffered output
/// posted after a state transition is available.
pub const XEN_FAMILIES: [&str; 26] = [
    "t1", "t2", "m1", "m2", "m3", "m4", "c1", "c3", "c4", "cc2", "cr1", "r3", "r4", "x1", "x1e", "d2", "h1", "hs1",
    "i2", "i3", "g2", "g3", "p2", "p3", "f1", "hi1",
];

/// Whether `instance_type` runs on the Nitro system: every family but the Xen ones (`p3dn` is its own
/// family), and bare-metal sizes (`i3.metal`) of those.
pub fn is_nitro(instance_type: &str) -> bool {
    let (family, size) = instance_type.split_once('.').unwrap_or((instance_type, ""));
    size.starts_with("metal") || !XEN_FAMILIES.contains(&family)
}

/// Checks the path of an HTTP health check: it starts with `/` and holds visible ASCII only (no space, CR, LF
/// or other control character, which would end or split the request line it is written into).
pub fn check_http_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("the path {path:?} must start with `/`"));
    }
    if let Some(c) = path.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "the path {path:?} contains {c:?}: only visible ASCII characters (no spaces or line breaks; \
             percent-encode them)"
        ));
    }
    if path.len() > 2048 {
        return Err(format!("the path is {} bytes long; at most 2048", path.len()));
    }
    Ok(())
}
