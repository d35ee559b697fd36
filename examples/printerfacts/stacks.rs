//! The reference workflow ("Paranoid NixOS on AWS") as three stacks, as the seed's Terraform had them:
//!
//! - `bootstrap`: the private, versioned bucket that keeps the other stacks' state;
//! - `aws_image`: the NixOS image, the images bucket, the `vmimport` role and policy, the uploaded image,
//!   the snapshot import and the AMI, whose id is the stack's output;
//! - `printerfacts`: a key pair, a security group with the seed's rules and the printerfacts host (`#[host]`):
//!   a t3.micro instance with a 40 GiB root volume launched from the AMI read through remote state, its NixOS
//!   system, and the deployment of that system to it.
//!
//! Shared by the example binary and the snapshot tests (`tests/it/printerfacts.rs`).

use std::path::PathBuf;

use paranix::host::{Host, HostSpec};
use paranix::nixos;
use paranix::prelude::*;

/// Where the disk image comes from.
#[derive(Clone, Debug)]
pub(crate) enum ImageSource {
    /// Built by Nix from `common/` and `examples/printerfacts/host.nix` (the reference workflow).
    Nix,
    /// A disk image file built elsewhere (`.vhd` files are imported as VHD, anything else as RAW).
    File(PathBuf),
}

/// The AMI id the `aws_image` stack exports and the `printerfacts` stack reads.
pub(crate) const AMI_ID: OutputKey<ImageId> = OutputKey::new("ami_id");

/// Names used across the stacks.
pub(crate) const STATE_BUCKET: &str = "paranix-printerfacts-state";
/// The images bucket.
pub(crate) const IMAGES_BUCKET: &str = "paranix-printerfacts-images";

/// The state bucket: private (the default), versioned, protected from deletion.
pub(crate) fn bootstrap() -> Stack {
    let mut stack = Stack::new("bootstrap");
    stack.add(s3::Bucket::new("state").bucket(STATE_BUCKET).versioning(true).tag("Project", "printerfacts").protect());
    stack
}

/// The NixOS image and everything that turns it into an AMI (the seed's S3 + ImportSnapshot path). Its
/// state lives in the bootstrap stack's bucket.
pub(crate) fn aws_image(source: &ImageSource) -> Stack {
    let mut stack = Stack::new("aws_image").backend(Backend::s3(STATE_BUCKET, "aws_image"));
    let images = stack.add(s3::Bucket::new("images").bucket(IMAGES_BUCKET).tag("Project", "printerfacts"));

    let vmimport = stack.add(
        iam::Role::new("vmimport").description("VM Import service role for NixOS images").assume_role_policy(
            iam::PolicyDocument::new().statement(
                iam::Statement::allow().service_principal("vmie.amazonaws.com").action("sts:AssumeRole").condition(
                    "StringEquals",
                    "sts:Externalid",
                    "vmimport",
                ),
            ),
        ),
    );
    stack.add(
        iam::RolePolicy::new("vmimport").role(vmimport.name()).policy(
            iam::PolicyDocument::new()
                .statement(
                    iam::Statement::allow()
                        .actions(["s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket"])
                        .resource(images.arn())
                        .resource(images.arn().join("/*")),
                )
                .statement(
                    iam::Statement::allow()
                        .actions([
                            "ec2:ModifySnapshotAttribute",
                            "ec2:CopySnapshot",
                            "ec2:RegisterImage",
                            "ec2:Describe*",
                        ])
                        .resource("*"),
                ),
        ),
    );

    // Uploads and AMIs are named from the image's store hash: a new image never overwrites an old one.
    let object = s3::Object::new("nixos").bucket(images.name());
    let (object, format, boot_mode, ami_name): (_, _, Value<String>, Value<String>) = match source {
        ImageSource::Nix => {
            let image = stack.add(nixos::Image::new("printerfacts", "examples/printerfacts/host.nix").format("vpc"));
            let object =
                object.key(image.object_key("printerfacts/", ".vhd")).source_output(image.file(), image.identity());
            (object, "VHD", image.boot_mode().into(), image.name_with("printerfacts-nixos-").into())
        }
        ImageSource::File(path) => {
            let vhd = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("vhd"));
            let object = object.key("printerfacts/nixos-amazon-image").source_file(path);
            (object, if vhd { "VHD" } else { "RAW" }, "legacy-bios".into(), "printerfacts-nixos".into())
        }
    };
    let object = stack.add(object);
    let snapshot = stack.add(
        ec2::SnapshotImport::new("nixos")
            .format(format)
            .from_object(&object)
            .role_name(vmimport.name())
            .description("NixOS image for printerfacts")
            .tag("Project", "printerfacts"),
    );
    let ami = stack.add(
        ec2::Image::new("nixos")
            .image_name(ami_name)
            .root_snapshot(snapshot.id())
            .boot_mode(boot_mode)
            .root_volume_size_gib(8)
            .tag("Project", "printerfacts"),
    );
    stack.export(&AMI_ID, ami.id());
    stack
}

/// The printerfacts host: a t3.micro booted from the NixOS AMI, with a 40 GiB encrypted root volume, running
/// `examples/printerfacts/host.nix` with the service's domain set to the instance's public address, and
/// answering `GET /fact` after every deploy.
#[paranix::host(
    instance_type = "t3.micro",
    root_volume(size_gib = 40, volume_type = "gp3"),
    configuration = "examples/printerfacts/host.nix",
    host_key = console,
    health_checks(http(port = 80, path = "/fact")),
    nixos(paranix.services.printerfacts.domain = public_ip),
    tags(Project = "printerfacts"),
)]
pub(crate) struct Printerfacts {
    /// The AMI the `aws_image` stack registered.
    pub(crate) ami: Output<ImageId>,
    /// The generated deploy key pair's name.
    pub(crate) key_name: Output<KeyName>,
    /// The key pair's private key, for deploys (sensitive).
    pub(crate) private_key: Output<String>,
    /// SSH, HTTP and ICMP in (the seed's rules).
    pub(crate) security_groups: Vec<Output<SecurityGroupId>>,
}

/// The host stack: key pair, security group (the seed's rules) and the printerfacts host, adjusted by
/// `adjust` (another instance type, an SSH address override, no deployment). Its state lives in the
/// bootstrap stack's bucket.
pub(crate) fn printerfacts(aws_image: &Stack, adjust: impl FnOnce(HostSpec) -> HostSpec) -> Stack {
    let mut stack = Stack::new("printerfacts").backend(Backend::s3(STATE_BUCKET, "printerfacts"));
    let image = stack.add(RemoteState::of(aws_image));
    let key = stack.add(ec2::KeyPair::generate("deployer"));
    // The seed's rules, as its Terraform wrote them (IPv4): SSH, HTTP and ICMP in; ICMP, TCP and UDP out. The
    // host's own firewall (NixOS) admits the same: 22 (sshd), 80 (nginx) and ping. HTTPS is not opened: the
    // example serves plain HTTP (`acme` off); a host with `acme.enable` needs a 443 rule too.
    let anywhere = "0.0.0.0/0";
    let group = stack.add(
        ec2::SecurityGroup::new("printerfacts")
            .description("printerfacts: SSH, HTTP and ICMP in; ICMP, TCP and UDP out")
            .ingress(ec2::Rule::tcp(22).cidr(anywhere).description("SSH"))
            .ingress(ec2::Rule::tcp(80).cidr(anywhere).description("HTTP"))
            .ingress(ec2::Rule::icmp().cidr(anywhere).description("ICMP"))
            .egress(ec2::Rule::icmp().cidr(anywhere))
            .egress(ec2::Rule::tcp_range(0, 65_535).cidr(anywhere))
            .egress(ec2::Rule::udp_range(0, 65_535).cidr(anywhere))
            .tag("Project", "printerfacts"),
    );
    let host = Printerfacts {
        ami: image.output(&AMI_ID),
        key_name: key.key_name(),
        private_key: key.private_key(),
        security_groups: vec![group.id()],
    };
    stack.add_host(adjust(host.spec()));
    stack
}

/// The three stacks, in the order they are applied, with the image built by Nix.
pub(crate) fn project() -> Project {
    project_with(&ImageSource::Nix)
}

/// The three stacks, with the image from `source`.
pub(crate) fn project_with(source: &ImageSource) -> Project {
    project_custom(source, "t3.micro")
}

/// The three stacks, with the image from `source` and another instance type.
pub(crate) fn project_custom(source: &ImageSource, instance_type: &str) -> Project {
    project_adjusted(source, |host| host.instance_type(instance_type))
}

/// The three stacks without the host's NixOS system and deployment (its instance only), for AWS emulators
/// that boot nothing.
pub(crate) fn project_infrastructure(source: &ImageSource, instance_type: &str) -> Project {
    project_adjusted(source, |host| host.instance_type(instance_type).infrastructure_only())
}

/// The three stacks, with the image from `source` and the host adjusted by `adjust`.
pub(crate) fn project_adjusted(source: &ImageSource, adjust: impl FnOnce(HostSpec) -> HostSpec) -> Project {
    let aws_image = aws_image(source);
    let printerfacts = printerfacts(&aws_image, adjust);
    Project::new().stack(bootstrap()).stack(aws_image).stack(printerfacts)
}
