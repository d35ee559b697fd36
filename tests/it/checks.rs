//! Paranoid checks at plan time: each check fires on its bad configuration, names the address and field,
//! and shows a fix; the printerfacts configuration triggers exactly one (SSH open to the world), and
//! `--deny-warnings` refuses it until that rule is narrowed.

use paranix::events::Silent;
use paranix::ops::{self, PlanRequest, Workspace};
use paranix::plan::Warning;
use paranix::prelude::*;
use paranix::testing::plan_offline;

use crate::printerfacts_stacks as stacks;

fn warnings(stack: &Stack) -> Vec<Warning> {
    plan_offline(stack).expect("plan").warnings
}

fn one(resource_stack: impl FnOnce(&mut Stack)) -> Vec<Warning> {
    let mut stack = Stack::new("s");
    resource_stack(&mut stack);
    warnings(&stack)
}

#[test]
fn each_check_fires_on_its_bad_configuration_and_names_address_field_and_fix() {
    let cases: Vec<(&str, &str, &str, Vec<Warning>)> =
        vec![
            (
                "ssh open to the world",
                "aws_security_group.web",
                "ingress[0]",
                one(|s| {
                    s.add(ec2::SecurityGroup::new("web").ingress(ec2::Rule::tcp(22).anywhere()));
                }),
            ),
            (
                "every port open",
                "aws_security_group.web",
                "ingress[0]",
                one(|s| {
                    s.add(ec2::SecurityGroup::new("web").ingress(ec2::Rule::all_traffic().cidr("0.0.0.0/0")));
                }),
            ),
            (
                "public bucket",
                "aws_s3_bucket.b",
                "public_access_block",
                one(|s| {
                    s.add(s3::Bucket::new("b").bucket("paranix-check-b").allow_public_access());
                }),
            ),
            (
                "imdsv1 instance",
                "aws_instance.i",
                "metadata_options.http_tokens",
                one(|s| {
                    s.add(ec2::Instance::new("i").ami("ami-12345678").allow_imds_v1());
                }),
            ),
            (
                "unencrypted root",
                "aws_instance.i",
                "root_block_device.encrypted",
                one(|s| {
                    s.add(ec2::Instance::new("i").ami("ami-12345678").unencrypted_root_volume());
                }),
            ),
            (
                "imdsv1 image",
                "aws_ami.nixos",
                "imds_support",
                one(|s| {
                    s.add(ec2::Image::new("nixos").root_snapshot("snap-1").allow_imds_v1());
                }),
            ),
            (
                "admin policy",
                "aws_iam_role_policy.p",
                "policy",
                one(|s| {
                    s.add(iam::RolePolicy::new("p").role("r").policy(
                        iam::PolicyDocument::new().statement(iam::Statement::allow().action("*").resource("*")),
                    ));
                }),
            ),
        ];
    for (story, address, field, found) in cases {
        assert_eq!(found.len(), 1, "{story}: {found:?}");
        assert_eq!(found[0].address.to_string(), address, "{story}");
        assert_eq!(found[0].field, field, "{story}");
        assert!(!found[0].fix.is_empty(), "{story}");
    }
    // HTTP and HTTPS open to the world are what a web server is for: no warning.
    assert!(
        one(|s| {
            s.add(
                ec2::SecurityGroup::new("web")
                    .ingress(ec2::Rule::tcp(80).anywhere())
                    .ingress(ec2::Rule::tcp(443).anywhere()),
            );
        })
        .is_empty()
    );
}

#[tokio::test]
async fn an_unversioned_state_bucket_is_reported() {
    let mut bootstrap = Stack::new("bootstrap");
    bootstrap.add(s3::Bucket::new("state").bucket("paranix-check-state"));
    let mut app = Stack::new("app").backend(Backend::s3("paranix-check-state", "app"));
    app.add(s3::Bucket::new("data").bucket("paranix-check-data"));
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = Workspace::new(dir.path()).with_local_state_only();
    let plan = ops::plan(&Project::new().stack(bootstrap).stack(app), &ws, &PlanRequest::default(), &Silent)
        .await
        .expect("plan");
    let found: Vec<String> = plan.stacks.iter().flat_map(|p| &p.warnings).map(ToString::to_string).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("aws_s3_bucket.state: `versioning`: it holds stack state"), "{found:?}");
}

#[tokio::test]
async fn deny_warnings_refuses_the_seed_configuration_until_its_ssh_rule_is_narrowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = Workspace::new(dir.path()).with_local_state_only();
    let project = stacks::project();
    let plan = ops::plan(&project, &ws, &PlanRequest::default(), &Silent).await.expect("plan");
    let found: Vec<String> = plan.stacks.iter().flat_map(|p| &p.warnings).map(ToString::to_string).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("aws_security_group.printerfacts: `ingress[0]`: opens SSH (port 22) to the whole internet"),
        "{found:?}"
    );
    assert!(plan.to_string().contains("Warning: aws_security_group.printerfacts"), "the plan shows it");

    let strict = PlanRequest { deny_warnings: true, ..PlanRequest::default() };
    let err = ops::plan(&project, &ws, &strict, &Silent).await.expect_err("denied");
    assert!(err.to_string().contains("--deny-warnings"), "{err}");

    // The same stacks with SSH narrowed to an administrator's network pass.
    let aws_image = stacks::aws_image(&stacks::ImageSource::Nix);
    let mut host = Stack::new("printerfacts").backend(Backend::s3(stacks::STATE_BUCKET, "printerfacts"));
    let image = host.add(RemoteState::of(&aws_image));
    let group = host.add(
        ec2::SecurityGroup::new("printerfacts")
            .ingress(ec2::Rule::tcp(22).cidr("203.0.113.0/24").description("SSH from the office"))
            .ingress(ec2::Rule::tcp(80).anywhere())
            .ingress(ec2::Rule::tcp(443).anywhere())
            .egress(ec2::Rule::all_traffic().anywhere()),
    );
    host.add(ec2::Instance::new("printerfacts").ami(image.output(&stacks::AMI_ID)).security_group(group.id()));
    let narrowed = Project::new().stack(stacks::bootstrap()).stack(aws_image).stack(host);
    ops::plan(&narrowed, &ws, &strict, &Silent).await.expect("no warnings left");
}
