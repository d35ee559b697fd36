//! Amazon EC2: [`SnapshotImport`], [`Image`] (AMI), [`KeyPair`], [`SecurityGroup`] and [`Instance`].

use std::collections::BTreeMap;

use crate::address::Mode;
use crate::attr::{Attr, Attrs};
use crate::aws::{lifecycle_methods, tag_methods, tags_attr, validate};
use crate::resource::{Handle, Lifecycle, Resource, Validator};
use crate::schema::{Compare, Field, OutputField, Schema};
use crate::value::{
    Arn, BucketName, Digest, HostAddress, ImageId, InstanceId, KeyName, ObjectKey, Output, PublicKey, RoleName,
    SecurityGroupId, SnapshotId, Value,
};

fn opt<T: crate::value::IntoAttr>(v: &Option<Value<T>>) -> Attr {
    v.as_ref().map_or(Attr::Null, Value::to_attr)
}

fn opt_str(v: &Option<String>) -> Attr {
    v.clone().map_or(Attr::Null, Attr::Str)
}

// ---------------------------------------------------------------------------------------------------------
// SnapshotImport

/// A snapshot imported from a disk image in S3 by the VM Import service (`ImportSnapshot`, the seed's path).
/// The EBS direct [`Snapshot`](crate::aws::ebs::Snapshot) is faster and needs no bucket or role.
#[derive(Clone, Debug)]
pub struct SnapshotImport {
    name: String,
    format: String,
    bucket: Option<Value<BucketName>>,
    key: Option<Value<ObjectKey>>,
    identity: Option<Value<Digest>>,
    role_name: Option<Value<RoleName>>,
    description: Option<String>,
    tags: BTreeMap<String, String>,
    lifecycle: Lifecycle,
}

static SNAPSHOT_IMPORT_FIELDS: [Field; 7] = [
    Field::new("bucket").force_new(),
    Field::new("description").force_new(),
    Field::new("format").force_new(),
    Field::new("key").force_new(),
    Field::new("role_name").force_new(),
    Field::new("source_identity").force_new(),
    Field::new("tags"),
];

static SNAPSHOT_IMPORT_OUTPUTS: [OutputField; 3] =
    [OutputField::new("arn"), OutputField::new("id"), OutputField::new("volume_size")];

/// The schema of [`SnapshotImport`].
pub static SNAPSHOT_IMPORT: Schema = Schema {
    kind: "aws_ebs_snapshot_import",
    mode: Mode::Managed,
    fields: &SNAPSHOT_IMPORT_FIELDS,
    outputs: &SNAPSHOT_IMPORT_OUTPUTS,
    id: Some("id"),
    predict: crate::schema::predict_nothing,
    open_outputs: false,
};

/// Disk image formats `ImportSnapshot` accepts.
pub const IMPORT_FORMATS: [&str; 3] = ["VHD", "VMDK", "RAW"];

impl SnapshotImport {
    /// An import with logical name `name`, format VHD.
    pub fn new(name: impl Into<String>) -> Self {
        SnapshotImport {
            name: name.into(),
            format: "VHD".into(),
            bucket: None,
            key: None,
            identity: None,
            role_name: None,
            description: None,
            tags: BTreeMap::new(),
            lifecycle: Lifecycle::default(),
        }
    }

    /// The image format: `VHD` (default), `VMDK` or `RAW`.
    pub fn format(mut self, format: impl Into<String>) -> Self {
        self.format = format.into();
        self
    }

    /// The uploaded image: bucket, key and content identity, usually from an [`s3::Object`](crate::aws::s3::Object)
    /// handle, so a new upload re-imports.
    pub fn from_object(mut self, object: &Handle<crate::aws::s3::Object>) -> Self {
        self.bucket = Some(object.bucket().into());
        self.key = Some(object.key().into());
        self.identity = Some(object.source_identity().into());
        self
    }

    /// The service role VM Import assumes (the seed's `vmimport`).
    pub fn role_name(mut self, role: impl Into<Value<RoleName>>) -> Self {
        self.role_name = Some(role.into());
        self
    }

    /// A description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    tag_methods!();
}

impl Resource for SnapshotImport {
    fn schema() -> &'static Schema {
        &SNAPSHOT_IMPORT
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Attrs {
        Attrs::from([
            ("bucket".into(), opt(&self.bucket)),
            ("description".into(), opt_str(&self.description)),
            ("format".into(), Attr::str(&self.format)),
            ("key".into(), opt(&self.key)),
            ("role_name".into(), opt(&self.role_name)),
            ("source_identity".into(), opt(&self.identity)),
            ("tags".into(), tags_attr(&self.tags)),
        ])
    }

    fn validate(&self, v: &mut Validator<'_>) {
        if !IMPORT_FORMATS.contains(&self.format.as_str()) {
            v.error("format", format!("{:?} is not one of {}", self.format, IMPORT_FORMATS.join(", ")));
        }
        if self.bucket.is_none() || self.key.is_none() {
            v.error("bucket", "required: set `from_object(&object)`");
        }
        if self.role_name.is_none() {
            v.error("role_name", "required: the VM Import service role (e.g. `vmimport.name()`)");
        }
        v.check("tags", validate::tags(&self.tags));
    }

    lifecycle_methods!();
}

impl Handle<SnapshotImport> {
    /// The imported snapshot's id.
    pub fn id(&self) -> Output<SnapshotId> {
        self.attribute("id")
    }
}

// ---------------------------------------------------------------------------------------------------------
// Image

/// CPU architectures an AMI can have.
pub const ARCHITECTURES: [&str; 2] = ["x86_64", "arm64"];
/// Boot modes an AMI can have.
pub const BOOT_MODES: [&str; 3] = ["legacy-bios", "uefi", "uefi-preferred"];
/// EBS volume types.
pub const VOLUME_TYPES: [&str; 6] = ["gp3", "gp2", "io1", "io2", "st1", "sc1"];

/// An AMI registered from a snapshot, with the parameters NixOS images need (HVM, ENA, SR-IOV, `/dev/xvda`,
/// gp3) and IMDSv2 required by default.
#[derive(Clone, Debug)]
pub struct Image {
    name: String,
    image_name: Option<Value<String>>,
    description: Option<String>,
    architecture: String,
    boot_mode: Value<String>,
    root_device_name: String,
    snapshot: Option<Value<SnapshotId>>,
    volume_size_gib: Option<i64>,
    volume_type: String,
    ena_support: bool,
    sriov_net_support: bool,
    imds_v2_only: bool,
    tpm_support: bool,
    tags: BTreeMap<String, String>,
    lifecycle: Lifecycle,
}

static IMAGE_FIELDS: [Field; 13] = [
    Field::new("architecture").force_new(),
    Field::new("block_device").force_new(),
    Field::new("boot_mode").force_new(),
    Field::new("description"),
    Field::new("ena_support").force_new(),
    Field::new("imds_support").force_new(),
    Field::new("name").force_new(),
    Field::new("root_device_name").force_new(),
    Field::new("snapshot_id").force_new(),
    Field::new("sriov_net_support").force_new(),
    Field::new("tags"),
    Field::new("tpm_support").force_new(),
    Field::new("virtualization_type").force_new(),
];

static IMAGE_OUTPUTS: [OutputField; 2] = [OutputField::new("arn"), OutputField::new("id")];

/// The schema of [`Image`].
pub static IMAGE: Schema = Schema {
    kind: "aws_ami",
    mode: Mode::Managed,
    fields: &IMAGE_FIELDS,
    outputs: &IMAGE_OUTPUTS,
    id: Some("id"),
    predict: crate::schema::predict_nothing,
    open_outputs: false,
};

impl Image {
    /// An AMI with logical name `name`; its AMI name defaults to `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Image {
            name: name.into(),
            image_name: None,
            description: None,
            architecture: "x86_64".into(),
            boot_mode: Value::Known("legacy-bios".into()),
            root_device_name: "/dev/xvda".into(),
            snapshot: None,
            volume_size_gib: None,
            volume_type: "gp3".into(),
            ena_support: true,
            sriov_net_support: true,
            imds_v2_only: true,
            tpm_support: false,
            tags: BTreeMap::new(),
            lifecycle: Lifecycle::default(),
        }
    }

    /// The AMI name (unique per account and region; changing it replaces the image), e.g. from a NixOS
    /// image's store hash (`image.name_with("nixos-")`).
    pub fn image_name(mut self, name: impl Into<Value<String>>) -> Self {
        self.image_name = Some(name.into());
        self
    }

    /// A description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// `x86_64` (default) or `arm64`.
    pub fn architecture(mut self, architecture: impl Into<String>) -> Self {
        self.architecture = architecture.into();
        self
    }

    /// `legacy-bios` (default), `uefi` or `uefi-preferred`, or an output such as a NixOS image's
    /// `boot_mode()` (from its `image-info.json`).
    pub fn boot_mode(mut self, boot_mode: impl Into<Value<String>>) -> Self {
        self.boot_mode = boot_mode.into();
        self
    }

    /// The root device's snapshot.
    pub fn root_snapshot(mut self, snapshot: impl Into<Value<SnapshotId>>) -> Self {
        self.snapshot = Some(snapshot.into());
        self
    }

    /// The root volume size in GiB (default: the snapshot's size).
    pub fn root_volume_size_gib(mut self, gib: i64) -> Self {
        self.volume_size_gib = Some(gib);
        self
    }

    /// The root volume type (`gp3` by default).
    pub fn root_volume_type(mut self, volume_type: impl Into<String>) -> Self {
        self.volume_type = volume_type.into();
        self
    }

    /// Allows IMDSv1 on instances launched from the image (IMDSv2 is required by default). Think twice.
    pub fn allow_imds_v1(mut self) -> Self {
        self.imds_v2_only = false;
        self
    }

    /// Marks the image as supporting NitroTPM 2.0 (UEFI, x86_64 only).
    pub fn tpm_support(mut self, yes: bool) -> Self {
        self.tpm_support = yes;
        self
    }

    tag_methods!();

    fn ami_name(&self) -> Value<String> {
        self.image_name.clone().unwrap_or_else(|| Value::Known(self.name.clone()))
    }
}

impl Resource for Image {
    fn schema() -> &'static Schema {
        &IMAGE
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Attrs {
        let block = Attr::Map(BTreeMap::from([
            ("delete_on_termination".into(), Attr::Bool(true)),
            ("device_name".into(), Attr::str(&self.root_device_name)),
            ("volume_size".into(), self.volume_size_gib.map_or(Attr::Null, Attr::Int)),
            ("volume_type".into(), Attr::str(&self.volume_type)),
        ]));
        Attrs::from([
            ("architecture".into(), Attr::str(&self.architecture)),
            ("block_device".into(), block),
            ("boot_mode".into(), self.boot_mode.to_attr()),
            ("description".into(), opt_str(&self.description)),
            ("ena_support".into(), Attr::Bool(self.ena_support)),
            ("imds_support".into(), if self.imds_v2_only { Attr::str("v2.0") } else { Attr::Null }),
            ("name".into(), self.ami_name().to_attr()),
            ("root_device_name".into(), Attr::str(&self.root_device_name)),
            ("snapshot_id".into(), opt(&self.snapshot)),
            ("sriov_net_support".into(), if self.sriov_net_support { Attr::str("simple") } else { Attr::Null }),
            ("tags".into(), tags_attr(&self.tags)),
            ("tpm_support".into(), if self.tpm_support { Attr::str("v2.0") } else { Attr::Null }),
            ("virtualization_type".into(), Attr::str("hvm")),
        ])
    }

    fn validate(&self, v: &mut Validator<'_>) {
        if let Value::Known(name) = self.ami_name()
            && (!(3..=128).contains(&name.len())
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(c)))
        {
            v.error("name", format!("{name:?} is not an AMI name (3 to 128 of letters, digits and ()[] ./-'@_)"));
        }
        if !ARCHITECTURES.contains(&self.architecture.as_str()) {
            v.error("architecture", format!("{:?} is not one of {}", self.architecture, ARCHITECTURES.join(", ")));
        }
        if let Value::Known(mode) = &self.boot_mode
            && !BOOT_MODES.contains(&mode.as_str())
        {
            v.error("boot_mode", format!("{mode:?} is not one of {}", BOOT_MODES.join(", ")));
        }
        if !VOLUME_TYPES.contains(&self.volume_type.as_str()) {
            v.error(
                "block_device.volume_type",
                format!("{:?} is not one of {}", self.volume_type, VOLUME_TYPES.join(", ")),
            );
        }
        if self.snapshot.is_none() {
            v.error("snapshot_id", "required: the root device's snapshot (`root_snapshot(snapshot.id())`)");
        }
        if let Some(size) = self.volume_size_gib
            && !(1..=16_384).contains(&size)
        {
            v.error("block_device.volume_size", format!("{size} GiB is outside 1..=16384"));
        }
        if self.tpm_support && (self.boot_mode.known().is_some_and(|m| m != "uefi") || self.architecture != "x86_64") {
            v.error("tpm_support", "NitroTPM needs boot_mode \"uefi\" and architecture \"x86_64\"");
        }
        v.check("tags", validate::tags(&self.tags));
    }

    lifecycle_methods!();
}

impl Handle<Image> {
    /// The AMI id.
    pub fn id(&self) -> Output<ImageId> {
        self.attribute("id")
    }

    /// The AMI's ARN.
    pub fn arn(&self) -> Output<Arn> {
        self.attribute("arn")
    }
}

// ---------------------------------------------------------------------------------------------------------
// KeyPair

/// An EC2 key pair: a generated ed25519 key (the private half is sensitive, kept in state only) or the public
/// half of a key you already have.
#[derive(Clone, Debug)]
pub struct KeyPair {
    name: String,
    key_name: Option<String>,
    public_key: Option<String>,
    tags: BTreeMap<String, String>,
    lifecycle: Lifecycle,
}

static KEY_PAIR_FIELDS: [Field; 4] = [
    Field::new("algorithm").force_new(),
    Field::new("key_name").force_new(),
    Field::new("public_key").force_new(),
    Field::new("tags"),
];

static KEY_PAIR_OUTPUTS: [OutputField; 4] = [
    OutputField::new("fingerprint"),
    OutputField::new("id"),
    OutputField::new("generated_public_key"),
    OutputField::sensitive("private_key_openssh"),
];

/// The schema of [`KeyPair`].
pub static KEY_PAIR: Schema = Schema {
    kind: "aws_key_pair",
    mode: Mode::Managed,
    fields: &KEY_PAIR_FIELDS,
    outputs: &KEY_PAIR_OUTPUTS,
    id: Some("id"),
    predict: predict_key_pair,
    open_outputs: false,
};

/// An imported key pair (its public key given) has no private key: nothing secret reaches the state; its
/// public key is the one given.
fn predict_key_pair(inputs: &Attrs) -> Attrs {
    match inputs.get("public_key") {
        Some(Attr::Str(key)) => Attrs::from([
            ("generated_public_key".to_owned(), Attr::str(key)),
            ("private_key_openssh".to_owned(), Attr::Null),
        ]),
        _ => Attrs::new(),
    }
}

impl KeyPair {
    /// A key pair whose ed25519 key paranix generates at apply time.
    pub fn generate(name: impl Into<String>) -> Self {
        KeyPair {
            name: name.into(),
            key_name: None,
            public_key: None,
            tags: BTreeMap::new(),
            lifecycle: Lifecycle::default(),
        }
    }

    /// A key pair importing an existing public key (`ssh-ed25519 AAAA... comment`).
    pub fn from_public_key(name: impl Into<String>, public_key: impl Into<String>) -> Self {
        KeyPair { public_key: Some(public_key.into()), ..KeyPair::generate(name) }
    }

    /// The EC2 key name (defaults to the logical name).
    pub fn key_name(mut self, key_name: impl Into<String>) -> Self {
        self.key_name = Some(key_name.into());
        self
    }

    tag_methods!();
}

impl Resource for KeyPair {
    fn schema() -> &'static Schema {
        &KEY_PAIR
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Attrs {
        Attrs::from([
            ("algorithm".into(), Attr::str("ed25519")),
            ("key_name".into(), Attr::Str(self.key_name.clone().unwrap_or_else(|| self.name.clone()))),
            ("public_key".into(), opt_str(&self.public_key)),
            ("tags".into(), tags_attr(&self.tags)),
        ])
    }

    fn validate(&self, v: &mut Validator<'_>) {
        if let Some(key) = &self.public_key {
            let mut parts = key.split_whitespace();
            let (kind, body) = (parts.next(), parts.next());
            if kind != Some("ssh-ed25519") || body.is_none_or(|b| !b.starts_with("AAAA")) {
                v.error("public_key", "must be an OpenSSH ed25519 public key line (`ssh-ed25519 AAAA... comment`)");
            }
        }
        v.check("tags", validate::tags(&self.tags));
    }

    lifecycle_methods!();
}

/// The public key of the key pair at `address` (what [`Handle::<KeyPair>::public_key`] returns).
pub fn key_pair_public_key(address: &crate::address::Address) -> Output<PublicKey> {
    Output::of(address, "generated_public_key")
}

impl Handle<KeyPair> {
    /// The EC2 key name.
    pub fn key_name(&self) -> Output<KeyName> {
        self.attribute("key_name")
    }

    /// The pair's public key: the generated one, or the one imported. `#[host]` admits it for the deploy
    /// login on the host's NixOS system.
    pub fn public_key(&self) -> Output<PublicKey> {
        key_pair_public_key(self.address())
    }

    /// The generated private key in OpenSSH format. Sensitive: it never appears in plans or events.
    pub fn private_key(&self) -> Output<String> {
        self.attribute("private_key_openssh")
    }
}

// ---------------------------------------------------------------------------------------------------------
// SecurityGroup

/// One ingress or egress rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    protocol: String,
    from_port: i64,
    to_port: i64,
    cidr_blocks: Vec<String>,
    ipv6_cidr_blocks: Vec<String>,
    description: Option<String>,
}

impl Rule {
    fn new(protocol: &str, from_port: i64, to_port: i64) -> Self {
        Rule {
            protocol: protocol.into(),
            from_port,
            to_port,
            cidr_blocks: Vec::new(),
            ipv6_cidr_blocks: Vec::new(),
            description: None,
        }
    }

    /// TCP on one port.
    pub fn tcp(port: i64) -> Self {
        Rule::new("tcp", port, port)
    }

    /// TCP on a port range (inclusive).
    pub fn tcp_range(from: i64, to: i64) -> Self {
        Rule::new("tcp", from, to)
    }

    /// UDP on one port.
    pub fn udp(port: i64) -> Self {
        Rule::new("udp", port, port)
    }

    /// UDP on a port range (inclusive).
    pub fn udp_range(from: i64, to: i64) -> Self {
        Rule::new("udp", from, to)
    }

    /// ICMP of every type and code.
    pub fn icmp() -> Self {
        Rule::new("icmp", -1, -1)
    }

    /// Every protocol and port.
    pub fn all_traffic() -> Self {
        Rule::new("-1", 0, 0)
    }

    /// A rule with an explicit protocol name or number (`tcp`, `udp`, `icmp`, `icmpv6`, `-1`, `50`).
    pub fn protocol(protocol: impl Into<String>, from: i64, to: i64) -> Self {
        Rule::new(&protocol.into(), from, to)
    }

    /// Allows an IPv4 CIDR block.
    pub fn cidr(mut self, cidr: impl Into<String>) -> Self {
        self.cidr_blocks.push(cidr.into());
        self
    }

    /// Allows an IPv6 CIDR block.
    pub fn ipv6_cidr(mut self, cidr: impl Into<String>) -> Self {
        self.ipv6_cidr_blocks.push(cidr.into());
        self
    }

    /// Allows the whole internet, IPv4 and IPv6 (`0.0.0.0/0`, `::/0`).
    pub fn anywhere(self) -> Self {
        self.cidr("0.0.0.0/0").ipv6_cidr("::/0")
    }

    /// A description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    fn to_attr(&self) -> Attr {
        let mut cidrs = self.cidr_blocks.clone();
        cidrs.sort();
        let mut v6 = self.ipv6_cidr_blocks.clone();
        v6.sort();
        Attr::Map(BTreeMap::from([
            ("cidr_blocks".into(), Attr::List(cidrs.into_iter().map(Attr::Str).collect())),
            ("description".into(), opt_str(&self.description)),
            ("from_port".into(), Attr::Int(self.from_port)),
            ("ipv6_cidr_blocks".into(), Attr::List(v6.into_iter().map(Attr::Str).collect())),
            ("protocol".into(), Attr::str(&self.protocol)),
            ("to_port".into(), Attr::Int(self.to_port)),
        ]))
    }

    fn validate(&self, field: &str, v: &mut Validator<'_>) {
        let named = ["tcp", "udp", "icmp", "icmpv6", "-1"];
        let numeric = self.protocol.parse::<u8>().is_ok();
        if !named.contains(&self.protocol.as_str()) && !numeric {
            v.error(
                format!("{field}.protocol"),
                format!("{:?} is not one of tcp, udp, icmp, icmpv6, -1 or a protocol number", self.protocol),
            );
        }
        match self.protocol.as_str() {
            "tcp" | "udp" => {
                for (name, port) in [("from_port", self.from_port), ("to_port", self.to_port)] {
                    if !(0..=65_535).contains(&port) {
                        v.error(format!("{field}.{name}"), format!("port {port} is outside 0..=65535"));
                    }
                }
                if self.from_port > self.to_port {
                    v.error(
                        format!("{field}.from_port"),
                        format!("from_port {} is above to_port {}", self.from_port, self.to_port),
                    );
                }
            }
            "icmp" | "icmpv6" if (!(-1..=255).contains(&self.from_port) || !(-1..=255).contains(&self.to_port)) => {
                v.error(format!("{field}.from_port"), "ICMP type and code must be -1 (all) or 0..=255");
            }
            _ => {}
        }
        if self.cidr_blocks.is_empty() && self.ipv6_cidr_blocks.is_empty() {
            v.error(format!("{field}.cidr_blocks"), "a rule needs at least one CIDR block");
        }
        for cidr in &self.cidr_blocks {
            v.check(format!("{field}.cidr_blocks"), validate::cidr_v4(cidr));
        }
        for cidr in &self.ipv6_cidr_blocks {
            v.check(format!("{field}.ipv6_cidr_blocks"), validate::cidr_v6(cidr));
        }
        if let Some(d) = &self.description
            && d.len() > 255
        {
            v.error(format!("{field}.description"), "longer than 255 characters");
        }
    }
}

/// A security group whose rules paranix owns exclusively: rules added out of band show up as drift.
#[derive(Clone, Debug)]
pub struct SecurityGroup {
    name: String,
    group_name: Option<String>,
    description: String,
    vpc_id: Option<String>,
    ingress: Vec<Rule>,
    egress: Vec<Rule>,
    tags: BTreeMap<String, String>,
    lifecycle: Lifecycle,
}

static SECURITY_GROUP_FIELDS: [Field; 6] = [
    Field::new("description").force_new(),
    Field::new("egress").compare(Compare::Rules),
    Field::new("ingress").compare(Compare::Rules),
    Field::new("name").force_new(),
    Field::new("tags"),
    Field::new("vpc_id").force_new(),
];

static SECURITY_GROUP_OUTPUTS: [OutputField; 2] = [OutputField::new("arn"), OutputField::new("id")];

/// The schema of [`SecurityGroup`].
pub static SECURITY_GROUP: Schema = Schema {
    kind: "aws_security_group",
    mode: Mode::Managed,
    fields: &SECURITY_GROUP_FIELDS,
    outputs: &SECURITY_GROUP_OUTPUTS,
    id: Some("id"),
    predict: crate::schema::predict_nothing,
    open_outputs: false,
};

impl SecurityGroup {
    /// A security group with logical name `name` (also its group name by default), in the default VPC, with
    /// no rules.
    pub fn new(name: impl Into<String>) -> Self {
        SecurityGroup {
            name: name.into(),
            group_name: None,
            description: "Managed by paranix".into(),
            vpc_id: None,
            ingress: Vec::new(),
            egress: Vec::new(),
            tags: BTreeMap::new(),
            lifecycle: Lifecycle::default(),
        }
    }

    /// The group name.
    pub fn group_name(mut self, name: impl Into<String>) -> Self {
        self.group_name = Some(name.into());
        self
    }

    /// The description (cannot change without replacing the group).
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// The VPC (default: the region's default VPC).
    pub fn vpc_id(mut self, vpc_id: impl Into<String>) -> Self {
        self.vpc_id = Some(vpc_id.into());
        self
    }

    /// Adds an inbound rule.
    pub fn ingress(mut self, rule: Rule) -> Self {
        self.ingress.push(rule);
        self
    }

    /// Adds an outbound rule.
    pub fn egress(mut self, rule: Rule) -> Self {
        self.egress.push(rule);
        self
    }

    tag_methods!();
}

impl Resource for SecurityGroup {
    fn schema() -> &'static Schema {
        &SECURITY_GROUP
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Attrs {
        Attrs::from([
            ("description".into(), Attr::str(&self.description)),
            ("egress".into(), Attr::List(self.egress.iter().map(Rule::to_attr).collect())),
            ("ingress".into(), Attr::List(self.ingress.iter().map(Rule::to_attr).collect())),
            ("name".into(), Attr::Str(self.group_name.clone().unwrap_or_else(|| self.name.clone()))),
            ("tags".into(), tags_attr(&self.tags)),
            ("vpc_id".into(), opt_str(&self.vpc_id)),
        ])
    }

    fn validate(&self, v: &mut Validator<'_>) {
        if self.description.is_empty() || self.description.len() > 255 {
            v.error("description", "must be 1 to 255 characters");
        }
        for (i, rule) in self.ingress.iter().enumerate() {
            rule.validate(&format!("ingress[{i}]"), v);
        }
        for (i, rule) in self.egress.iter().enumerate() {
            rule.validate(&format!("egress[{i}]"), v);
        }
        v.check("tags", validate::tags(&self.tags));
    }

    lifecycle_methods!();
}

impl Handle<SecurityGroup> {
    /// The group id.
    pub fn id(&self) -> Output<SecurityGroupId> {
        self.attribute("id")
    }
}

/// The canonical form of a list of security group rules: one entry per (protocol, from_port, to_port, CIDR,
/// description), sorted, duplicates removed. AWS groups rules per protocol and ports, paranix per rule; both
/// mean the same set of atoms.
pub fn canonical_rules(rules: &Attr) -> Attr {
    let Attr::List(rules) = rules else { return rules.clone() };
    let mut atoms = Vec::new();
    for rule in rules {
        let Attr::Map(rule) = rule else {
            atoms.push(rule.clone());
            continue;
        };
        for field in ["cidr_blocks", "ipv6_cidr_blocks"] {
            for cidr in rule.get(field).and_then(Attr::as_list).unwrap_or_default() {
                let mut atom: BTreeMap<String, Attr> = rule
                    .iter()
                    .filter(|(k, _)| !k.ends_with("cidr_blocks"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                atom.insert("cidr".into(), cidr.clone());
                atoms.push(Attr::Map(atom));
            }
        }
    }
    atoms.sort_by(crate::schema::sort_key);
    atoms.dedup();
    Attr::List(atoms)
}

// ---------------------------------------------------------------------------------------------------------
// Instance

pub use crate::aws::catalog::{
    INSTANCE_FAMILIES, INSTANCE_SIZES, ROOT_VOLUME_TYPES, check_instance_type, check_root_volume, instance_nix_system,
    is_nitro, small_instance_memory_mib,
};

/// An EC2 instance. Secure by default: IMDSv2 required, encrypted gp3 root volume.
#[derive(Clone, Debug)]
pub struct Instance {
    name: String,
    ami: Option<Value<ImageId>>,
    instance_type: String,
    key_name: Option<Value<KeyName>>,
    security_groups: Vec<Value<SecurityGroupId>>,
    subnet_id: Option<String>,
    root_size_gib: i64,
    root_type: String,
    root_encrypted: bool,
    imds_v2_required: bool,
    imds_hop_limit: i64,
    user_data: Option<String>,
    console_host_key: bool,
    tags: BTreeMap<String, String>,
    lifecycle: Lifecycle,
}

static INSTANCE_FIELDS: [Field; 10] = [
    Field::new("ami").force_new(),
    Field::new("console_host_key"),
    Field::new("instance_type"),
    Field::new("key_name").force_new(),
    Field::new("metadata_options"),
    Field::new("root_block_device"),
    Field::new("subnet_id").force_new(),
    Field::new("tags"),
    Field::new("user_data").force_new(),
    Field::new("vpc_security_group_ids").compare(Compare::Set),
];

static INSTANCE_OUTPUTS: [OutputField; 6] = [
    OutputField::new("arn"),
    OutputField::new("id"),
    OutputField::new("private_ip"),
    OutputField::new("public_dns"),
    OutputField::new("public_ip"),
    OutputField::new("ssh_host_key"),
];

/// The schema of [`Instance`].
pub static INSTANCE: Schema = Schema {
    kind: "aws_instance",
    mode: Mode::Managed,
    fields: &INSTANCE_FIELDS,
    outputs: &INSTANCE_OUTPUTS,
    id: Some("id"),
    predict: crate::schema::predict_nothing,
    open_outputs: false,
};

impl Instance {
    /// An instance with logical name `name` (t3.micro, 8 GiB encrypted gp3 root, IMDSv2 required).
    pub fn new(name: impl Into<String>) -> Self {
        Instance {
            name: name.into(),
            ami: None,
            instance_type: "t3.micro".into(),
            key_name: None,
            security_groups: Vec::new(),
            subnet_id: None,
            root_size_gib: 8,
            root_type: "gp3".into(),
            root_encrypted: true,
            imds_v2_required: true,
            imds_hop_limit: 1,
            user_data: None,
            console_host_key: false,
            tags: BTreeMap::new(),
            lifecycle: Lifecycle::default(),
        }
    }

    /// The AMI (changing it replaces the instance).
    pub fn ami(mut self, ami: impl Into<Value<ImageId>>) -> Self {
        self.ami = Some(ami.into());
        self
    }

    /// The instance type (changed in place: stop, modify, start).
    pub fn instance_type(mut self, instance_type: impl Into<String>) -> Self {
        self.instance_type = instance_type.into();
        self
    }

    /// The key pair for the first SSH login.
    pub fn key_name(mut self, key: impl Into<Value<KeyName>>) -> Self {
        self.key_name = Some(key.into());
        self
    }

    /// Adds a security group.
    pub fn security_group(mut self, group: impl Into<Value<SecurityGroupId>>) -> Self {
        self.security_groups.push(group.into());
        self
    }

    /// The subnet (default: the default VPC's default subnet).
    pub fn subnet_id(mut self, subnet: impl Into<String>) -> Self {
        self.subnet_id = Some(subnet.into());
        self
    }

    /// The root volume size in GiB (grown in place; AWS cannot shrink volumes).
    pub fn root_volume_size_gib(mut self, gib: i64) -> Self {
        self.root_size_gib = gib;
        self
    }

    /// The root volume type (`gp3` by default).
    pub fn root_volume_type(mut self, volume_type: impl Into<String>) -> Self {
        self.root_type = volume_type.into();
        self
    }

    /// Leaves the root volume unencrypted (encrypted by default). Think twice.
    pub fn unencrypted_root_volume(mut self) -> Self {
        self.root_encrypted = false;
        self
    }

    /// Allows IMDSv1 (IMDSv2 is required by default). Think twice.
    pub fn allow_imds_v1(mut self) -> Self {
        self.imds_v2_required = false;
        self
    }

    /// The IMDS response hop limit (1 by default; 2 lets containers on the host reach IMDS).
    pub fn imds_hop_limit(mut self, hops: i64) -> Self {
        self.imds_hop_limit = hops;
        self
    }

    /// Waits, after launch, for the SSH host key NixOS prints on the serial console (between
    /// `-----BEGIN SSH HOST KEY KEYS-----` markers) and records it as the output `ssh_host_key`, so deploys
    /// can pin it (`instance.ssh_host_key()`).
    pub fn host_key_from_console(mut self) -> Self {
        self.console_host_key = true;
        self
    }

    /// User data passed to the instance at first boot (changing it replaces the instance).
    pub fn user_data(mut self, user_data: impl Into<String>) -> Self {
        self.user_data = Some(user_data.into());
        self
    }

    tag_methods!();
}

impl Resource for Instance {
    fn schema() -> &'static Schema {
        &INSTANCE
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Attrs {
        let metadata = Attr::Map(BTreeMap::from([
            ("http_endpoint".into(), Attr::str("enabled")),
            ("http_put_response_hop_limit".into(), Attr::Int(self.imds_hop_limit)),
            ("http_tokens".into(), Attr::str(if self.imds_v2_required { "required" } else { "optional" })),
        ]));
        let root = Attr::Map(BTreeMap::from([
            ("delete_on_termination".into(), Attr::Bool(true)),
            ("encrypted".into(), Attr::Bool(self.root_encrypted)),
            ("volume_size".into(), Attr::Int(self.root_size_gib)),
            ("volume_type".into(), Attr::str(&self.root_type)),
        ]));
        Attrs::from([
            ("ami".into(), opt(&self.ami)),
            ("instance_type".into(), Attr::str(&self.instance_type)),
            ("key_name".into(), opt(&self.key_name)),
            ("metadata_options".into(), metadata),
            ("root_block_device".into(), root),
            ("subnet_id".into(), opt_str(&self.subnet_id)),
            ("tags".into(), tags_attr(&self.tags)),
            ("user_data".into(), opt_str(&self.user_data)),
            ("console_host_key".into(), Attr::Bool(self.console_host_key)),
            ("vpc_security_group_ids".into(), Attr::List(self.security_groups.iter().map(Value::to_attr).collect())),
        ])
    }

    fn validate(&self, v: &mut Validator<'_>) {
        if self.ami.is_none() {
            v.error("ami", "required: the AMI to launch (`ami(image.id())` or `\"ami-...\"`)");
        }
        if let Some(Value::Known(ami)) = &self.ami
            && !ami.as_str().starts_with("ami-")
        {
            v.error("ami", format!("{:?} is not an AMI id (`ami-...`)", ami.as_str()));
        }
        v.check("instance_type", check_instance_type(&self.instance_type));
        if let Err((field, message)) = check_root_volume(&self.root_type, self.root_size_gib) {
            v.error(format!("root_block_device.{field}"), message);
        }
        if !(1..=64).contains(&self.imds_hop_limit) {
            v.error(
                "metadata_options.http_put_response_hop_limit",
                format!("{} is outside 1..=64", self.imds_hop_limit),
            );
        }
        if self.user_data.as_ref().is_some_and(|u| u.len() > 16 * 1024) {
            v.error("user_data", "longer than 16 KiB, the EC2 limit");
        }
        v.check("tags", validate::tags(&self.tags));
    }

    lifecycle_methods!();
}

impl Handle<Instance> {
    /// The instance id.
    pub fn id(&self) -> Output<InstanceId> {
        self.attribute("id")
    }

    /// The public IPv4 address.
    pub fn public_ip(&self) -> Output<HostAddress> {
        self.attribute("public_ip")
    }

    /// The private IPv4 address.
    pub fn private_ip(&self) -> Output<HostAddress> {
        self.attribute("private_ip")
    }

    /// The ed25519 SSH host key the instance printed on its console (with
    /// [`Instance::host_key_from_console`]): pin it in deployments.
    pub fn ssh_host_key(&self) -> Output<PublicKey> {
        self.attribute("ssh_host_key")
    }

    /// The public DNS name.
    pub fn public_dns(&self) -> Output<HostAddress> {
        self.attribute("public_dns")
    }
}

pub(crate) mod provider;
