//! Bad input is rejected before any API call, each error naming the resource address and the field; the
//! AWS server (moto) sees no request at all.

use paranix::events::Silent;
use paranix::nixos::Deployment;
use paranix::ops::{self, PlanRequest};
use paranix::prelude::*;
use paranix::resource::ResourceExt;

use crate::aws::Cloud;

type Build = Box<dyn Fn() -> Stack>;

fn stack_with(f: impl Fn(&mut Stack) + 'static) -> Build {
    Box::new(move || {
        let mut stack = Stack::new("bad");
        f(&mut stack);
        stack
    })
}

fn bucket(name: &'static str) -> Build {
    stack_with(move |s| {
        s.add(s3::Bucket::new("b").bucket(name));
    })
}

fn rule(rule: fn() -> ec2::Rule) -> Build {
    stack_with(move |s| {
        s.add(ec2::SecurityGroup::new("sg").ingress(rule()));
    })
}

fn instance(f: fn(ec2::Instance) -> ec2::Instance) -> Build {
    stack_with(move |s| {
        s.add(f(ec2::Instance::new("i").ami("ami-12345678")));
    })
}

fn image(f: fn(ec2::Image) -> ec2::Image) -> Build {
    stack_with(move |s| {
        s.add(f(ec2::Image::new("nixos").root_snapshot("snap-1")));
    })
}

fn policy(statement: fn() -> iam::Statement) -> Build {
    stack_with(move |s| {
        s.add(iam::RolePolicy::new("p").role("r").policy(iam::PolicyDocument::new().statement(statement())));
    })
}

fn deployment(f: fn(Deployment) -> Deployment) -> Build {
    stack_with(move |s| {
        let d = Deployment::new("host")
            .host("192.0.2.10")
            .host_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")
            .identity_file("/dev/null")
            .toplevel("/nix/store/00000000000000000000000000000000-nixos-system");
        s.add(f(d));
    })
}

#[tokio::test]
async fn forty_bad_inputs_each_name_the_resource_and_field_and_reach_no_server() {
    let cloud = Cloud::start().await;
    let many_tags: Vec<(String, String)> = (0..51).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    let cases: Vec<(Build, &str)> = vec![
        (bucket("ab"), "aws_s3_bucket.b: field `bucket`: bucket name \"ab\" must be 3 to 63"),
        (bucket("Images"), "aws_s3_bucket.b: field `bucket`: bucket name \"Images\" contains 'I'"),
        (bucket("-images"), "aws_s3_bucket.b: field `bucket`: bucket name \"-images\" must start and end"),
        (bucket("a..b"), "aws_s3_bucket.b: field `bucket`: bucket name \"a..b\" must not contain"),
        (
            bucket("192.168.1.1"),
            "aws_s3_bucket.b: field `bucket`: bucket name \"192.168.1.1\" must not look like an IP",
        ),
        (
            bucket("xn--images"),
            "aws_s3_bucket.b: field `bucket`: bucket name \"xn--images\" uses a prefix or suffix reserved",
        ),
        (bucket("has_underscore"), "aws_s3_bucket.b: field `bucket`: bucket name \"has_underscore\" contains '_'"),
        (
            stack_with(move |s| {
                s.add(s3::Bucket::new("b").bucket("paranix-tags").tags(many_tags.clone()));
            }),
            "aws_s3_bucket.b: field `tags`: 51 tags given",
        ),
        (
            stack_with(|s| {
                s.add(s3::Bucket::new("b").bucket("paranix-tags").tag("aws:owner", "x"));
            }),
            "aws_s3_bucket.b: field `tags`: tag key \"aws:owner\" uses a reserved prefix",
        ),
        (
            stack_with(|s| {
                s.add(s3::Bucket::new("b").bucket("paranix-tags").tag("k", "v".repeat(300)));
            }),
            "aws_s3_bucket.b: field `tags`: the value of tag \"k\" is longer than 256",
        ),
        (
            rule(|| ec2::Rule::tcp(70000).cidr("10.0.0.0/8")),
            "aws_security_group.sg: field `ingress[0].from_port`: port 70000 is outside",
        ),
        (
            rule(|| ec2::Rule::tcp_range(100, 50).cidr("10.0.0.0/8")),
            "aws_security_group.sg: field `ingress[0].from_port`: from_port 100 is above to_port 50",
        ),
        (
            rule(|| ec2::Rule::protocol("bogus", 1, 2).cidr("10.0.0.0/8")),
            "aws_security_group.sg: field `ingress[0].protocol`: \"bogus\" is not one of",
        ),
        (
            rule(|| ec2::Rule::tcp(22).cidr("10.0.0.1/8")),
            "aws_security_group.sg: field `ingress[0].cidr_blocks`: \"10.0.0.1/8\" has host bits set",
        ),
        (
            rule(|| ec2::Rule::tcp(22).cidr("300.1.1.0/24")),
            "aws_security_group.sg: field `ingress[0].cidr_blocks`: \"300.1.1.0/24\": \"300.1.1.0\" is not an IPv4",
        ),
        (
            rule(|| ec2::Rule::tcp(22).cidr("10.0.0.0/40")),
            "aws_security_group.sg: field `ingress[0].cidr_blocks`: \"10.0.0.0/40\": prefix length must be 0 to 32",
        ),
        (
            rule(|| ec2::Rule::tcp(22).ipv6_cidr("::/200")),
            "aws_security_group.sg: field `ingress[0].ipv6_cidr_blocks`: \"::/200\": prefix length must be 0 to 128",
        ),
        (
            rule(|| ec2::Rule::tcp(22)),
            "aws_security_group.sg: field `ingress[0].cidr_blocks`: a rule needs at least one CIDR block",
        ),
        (
            rule(|| ec2::Rule::protocol("icmp", 300, 0).cidr("10.0.0.0/8")),
            "aws_security_group.sg: field `ingress[0].from_port`: ICMP type and code",
        ),
        (
            instance(|i| i.instance_type("t3.huge")),
            "aws_instance.i: field `instance_type`: unknown instance size \"huge\"",
        ),
        (
            instance(|i| i.instance_type("z9.micro")),
            "aws_instance.i: field `instance_type`: unknown instance family \"z9\"",
        ),
        (
            instance(|i| i.instance_type("t3micro")),
            "aws_instance.i: field `instance_type`: \"t3micro\" is not an instance type",
        ),
        (
            instance(|i| i.root_volume_size_gib(0)),
            "aws_instance.i: field `root_block_device.volume_size`: 0 GiB is outside",
        ),
        (
            instance(|i| i.root_volume_size_gib(20_000)),
            "aws_instance.i: field `root_block_device.volume_size`: 20000 GiB is outside",
        ),
        (
            instance(|i| i.root_volume_type("gp9")),
            "aws_instance.i: field `root_block_device.volume_type`: \"gp9\" is not one of",
        ),
        (
            instance(|i| i.imds_hop_limit(0)),
            "aws_instance.i: field `metadata_options.http_put_response_hop_limit`: 0 is outside",
        ),
        (instance(|i| i.ami("image-1")), "aws_instance.i: field `ami`: \"image-1\" is not an AMI id"),
        (instance(|i| i.user_data("x".repeat(20_000))), "aws_instance.i: field `user_data`: longer than 16 KiB"),
        (image(|i| i.image_name("ab")), "aws_ami.nixos: field `name`: \"ab\" is not an AMI name"),
        (
            image(|i| i.architecture("sparc")),
            "aws_ami.nixos: field `architecture`: \"sparc\" is not one of x86_64, arm64",
        ),
        (image(|i| i.boot_mode("bios")), "aws_ami.nixos: field `boot_mode`: \"bios\" is not one of"),
        (image(|i| i.tpm_support(true)), "aws_ami.nixos: field `tpm_support`: NitroTPM needs"),
        (image(|i| i.root_volume_size_gib(0)), "aws_ami.nixos: field `block_device.volume_size`: 0 GiB is outside"),
        (
            stack_with(|s| {
                s.add(iam::Role::new("r").role_name("has space").assume_role_policy(
                    iam::PolicyDocument::new().statement(iam::Statement::allow().action("sts:AssumeRole")),
                ));
            }),
            "aws_iam_role.r: field `name`: \"has space\" is not an IAM role name",
        ),
        (
            stack_with(|s| {
                s.add(iam::Role::new("r").path("x").assume_role_policy(
                    iam::PolicyDocument::new().statement(iam::Statement::allow().action("sts:AssumeRole")),
                ));
            }),
            "aws_iam_role.r: field `path`: \"x\" must start and end with `/`",
        ),
        (
            stack_with(|s| {
                s.add(iam::Role::new("r").max_session_duration(100).assume_role_policy(
                    iam::PolicyDocument::new().statement(iam::Statement::allow().action("sts:AssumeRole")),
                ));
            }),
            "aws_iam_role.r: field `max_session_duration`: 100 is outside",
        ),
        (
            stack_with(|s| {
                s.add(iam::RolePolicy::new("p").role("r").policy(iam::PolicyDocument::new()));
            }),
            "aws_iam_role_policy.p: field `policy`: a policy document needs at least one statement",
        ),
        (
            policy(|| iam::Statement::allow().resource("*")),
            "aws_iam_role_policy.p: field `policy.Statement[0].Action`: a statement needs at least one action",
        ),
        (
            policy(|| iam::Statement::allow().action("GetObject").resource("*")),
            "aws_iam_role_policy.p: field `policy.Statement[0].Action`: \"GetObject\" is not an action",
        ),
        (
            policy(|| iam::Statement::allow().action("s3:GetObject").resource("images")),
            "aws_iam_role_policy.p: field `policy.Statement[0].Resource`: \"images\" is not an ARN",
        ),
        (
            stack_with(|s| {
                s.add(
                    iam::RolePolicy::new("p").role("r").policy(
                        iam::PolicyDocument::new()
                            .version("2020-01-01")
                            .statement(iam::Statement::allow().action("s3:GetObject").resource("*")),
                    ),
                );
            }),
            "aws_iam_role_policy.p: field `policy.Version`: \"2020-01-01\" is not a policy version",
        ),
        (
            stack_with(|s| {
                s.add(ec2::KeyPair::from_public_key("k", "ssh-rsa AAAAB3NzaC1yc2E"));
            }),
            "aws_key_pair.k: field `public_key`: must be an OpenSSH ed25519 public key line",
        ),
        (
            stack_with(|s| {
                s.add(s3::Object::new("o").bucket("paranix-o").key("k").source_file("/nonexistent/image.raw"));
            }),
            "aws_s3_object.o: field `source`: cannot read /nonexistent/image.raw",
        ),
        (
            stack_with(|s| {
                s.add(s3::Object::new("o").bucket("paranix-o").source_file("/dev/null"));
            }),
            "aws_s3_object.o: field `key`: required",
        ),
        (
            stack_with(|s| {
                s.add(ebs::Snapshot::new("root").source_file("/nonexistent/disk.raw"));
            }),
            "aws_ebs_snapshot.root: field `source`: cannot read /nonexistent/disk.raw",
        ),
        (
            stack_with(|s| {
                s.add(ebs::Snapshot::new("root").source_file("/dev/null").volume_size_gib(0));
            }),
            "aws_ebs_snapshot.root: field `volume_size_gib`: 0 GiB is outside",
        ),
        (
            deployment(|d| d.toplevel("/tmp/system")),
            "nixos_deployment.host: field `toplevel`: \"/tmp/system\" is not a store path",
        ),
        (deployment(|d| d.host("localhost")), "nixos_deployment.host: field `host`: write 127.0.0.1"),
        (deployment(|d| d.action("reboot")), "nixos_deployment.host: field `action`: \"reboot\" is not one of"),
        (deployment(|d| d.port(0)), "nixos_deployment.host: field `port`: 0 is outside"),
        (
            stack_with(|s| {
                s.add(s3::Bucket::new("b").bucket("paranix-dup"));
                s.add(s3::Bucket::new("b").bucket("paranix-dup2"));
            }),
            "aws_s3_bucket.b: field `name`: the address aws_s3_bucket.b is declared twice",
        ),
        (
            stack_with(|s| {
                let mut other = Stack::new("other");
                let elsewhere = other.add(ec2::SecurityGroup::new("sg").ingress(ec2::Rule::tcp(22).cidr("10.0.0.0/8")));
                s.add(ec2::Instance::new("i").ami("ami-12345678").security_group(elsewhere.id()));
            }),
            "aws_instance.i: field `vpc_security_group_ids`: refers to aws_security_group.sg, which is not declared",
        ),
        (
            stack_with(|s| {
                s.add(s3::Bucket::new("b").bucket("paranix-ignore").ignore_changes(["tagz"]));
            }),
            "aws_s3_bucket.b: field `ignore_changes`: `tagz` is not a field of aws_s3_bucket",
        ),
        (
            stack_with(|s| {
                s.add(paranix::nixos::System::new("web", "host.nix").option::<String>("services._module.args", "x"));
            }),
            "nixos_system.web: field `values.options.services._module.args`: the segment \"_module\" is not an option name",
        ),
        (
            stack_with(|s| {
                let key = s.add(ec2::KeyPair::generate("deploy"));
                s.add(paranix::nixos::System::new("web", "host.nix").value("key", key.private_key()));
            }),
            "nixos_system.web: field `values`: refers to aws_key_pair.deploy.private_key_openssh, which is secret, but \
             this field is not: it would show in plans and state and be copied into the world-readable Nix store",
        ),
        (
            stack_with(|s| {
                let key = s.add(ec2::KeyPair::generate("deploy"));
                s.export(&OutputKey::<String>::new("deploy_key"), key.private_key());
            }),
            "stack \"bad\": field `outputs.deploy_key`: refers to aws_key_pair.deploy.private_key_openssh, which is secret",
        ),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for (build, expected) in &cases {
        let project = Project::new().stack(build());
        let err = ops::plan(&project, &cloud.ws, &PlanRequest::default(), &Silent).await.expect_err(expected);
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{expected}: {err}");
        assert!(err.to_string().contains(expected), "expected {expected:?} in:\n{err}");
    }
    assert_eq!(cloud.moto_requests(), 0, "no request may reach the AWS server");
    // The counter does count: one raw request shows up.
    cloud.s3.list_buckets().send().await.expect("list");
    assert_eq!(cloud.moto_requests(), 1);
}

#[tokio::test]
async fn unreadable_newer_and_foreign_state_and_plans_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = paranix::ops::Workspace::new(dir.path());
    let mut stack = Stack::new("web");
    stack.add(s3::Bucket::new("b").bucket("paranix-state-check"));
    let project = Project::new().stack(stack);
    let path = dir.path().join("web.json");

    std::fs::write(&path, "{ not json").expect("write");
    let err = ops::plan(&project, &ws, &PlanRequest::default(), &Silent).await.expect_err("garbage");
    assert!(err.to_string().contains(&format!("state {} is not valid JSON", path.display())), "{err}");

    let newer = paranix::state::State { version: 99, ..paranix::state::State::new("web") };
    std::fs::write(&path, newer.to_json()).expect("write");
    let err = ops::plan(&project, &ws, &PlanRequest::default(), &Silent).await.expect_err("newer");
    assert!(err.to_string().contains("schema version 99, newer than this paranix understands"), "{err}");

    std::fs::write(&path, paranix::state::State::new("db").to_json()).expect("write");
    let err = ops::plan(&project, &ws, &PlanRequest::default(), &Silent).await.expect_err("foreign");
    assert!(err.to_string().contains("belongs to stack \"db\", not \"web\""), "{err}");

    // A plan made for another stack is refused before anything runs.
    std::fs::remove_file(&path).expect("rm");
    let mut other = Stack::new("db");
    other.add(s3::Bucket::new("b").bucket("paranix-state-check"));
    let foreign = ops::plan(&Project::new().stack(other), &ws, &PlanRequest::default(), &Silent).await.expect("plan");
    let err = ops::apply(&project, &ws, &foreign, &Default::default()).await.expect_err("foreign plan");
    assert_eq!(err.kind(), ErrorKind::StalePlan);
    assert!(err.to_string().contains("stack \"db\", which the project does not have"), "{err}");
}
