//! The reference workflow against moto: the printerfacts stacks (the image is a local file; building the
//! NixOS image needs nixpkgs) go up, converge, change in place, and are destroyed without a trace; and two
//! concurrent runs on one stack never interleave.

use std::sync::Arc;
use std::time::Duration;

use paranix::apply::ApplyOptions;
use paranix::events::Silent;
use paranix::ops::{self, PlanRequest};
use paranix::prelude::*;
use paranix::testing::MemoryCloud;

use crate::aws::{Cloud, Inventory, ours, sparse_image};
use crate::kinds::Thing;
use crate::printerfacts_stacks::{self as stacks, ImageSource};

#[tokio::test]
async fn the_printerfacts_stacks_go_up_converge_update_in_place_and_leave_nothing_behind() {
    let cloud = Cloud::start().await;
    let image = cloud.dir.path().join("nixos.raw");
    sparse_image(&image, 64 << 20, 8);
    let source = ImageSource::File(image);
    let project = stacks::project_infrastructure(&source, "t3.micro");

    let plan = cloud.up(&project).await;
    assert_eq!(plan.summary().add, 10, "{plan}");
    // The two later stacks keep their state in the bootstrap stack's bucket.
    let keys = cloud.s3.list_objects_v2().bucket(stacks::STATE_BUCKET).send().await.expect("list");
    let mut names: Vec<&str> = keys.contents().iter().filter_map(|o| o.key()).collect();
    names.sort();
    assert_eq!(names, ["paranix/aws_image.json", "paranix/printerfacts.json"]);
    cloud.assert_converged(&project).await;

    // One changed field, one in-place update.
    let bigger = stacks::project_infrastructure(&source, "t3.small");
    let plan = cloud.plan(&bigger).await;
    let summary = plan.summary();
    assert_eq!((summary.add, summary.change, summary.destroy), (0, 1, 0), "{plan}");
    cloud.up(&bigger).await;
    cloud.assert_converged(&bigger).await;

    // Destroy the image and host stacks (the state bucket is protected), then the bootstrap stack once
    // its protection is lifted deliberately.
    let request = PlanRequest {
        destroy: true,
        stacks: vec!["aws_image".into(), "printerfacts".into()],
        ..PlanRequest::default()
    };
    let plan = ops::plan(&bigger, &cloud.ws, &request, &Silent).await.expect("plan destroy");
    for report in ops::apply(&bigger, &cloud.ws, &plan, &ApplyOptions::default()).await.expect("destroy") {
        report.into_result().expect("destroyed");
    }
    assert_eq!(ours(&cloud).await, Inventory { buckets: 1, ..Inventory::default() });
    for stack in ["aws_image", "printerfacts"] {
        let state = ops::state(&bigger, &cloud.ws, stack).await.expect("state");
        assert!(state.resources.is_empty() && state.outputs.is_empty(), "{stack}: {state:?}");
    }

    let mut unprotected = Stack::new("bootstrap");
    unprotected.add(
        s3::Bucket::new("state")
            .bucket(stacks::STATE_BUCKET)
            .versioning(true)
            .tag("Project", "printerfacts")
            .force_destroy(true),
    );
    let bootstrap = Project::new().stack(unprotected);
    cloud.up(&bootstrap).await;
    cloud.destroy(&bootstrap).await;
    assert_eq!(ours(&cloud).await, Inventory::default());
}

#[tokio::test]
async fn two_concurrent_runs_on_one_stack_never_interleave() {
    // The state lives in S3 (moto); the resource is an in-memory one whose changes take 200 ms, so the
    // winner holds the lock while the loser tries.
    let cloud = Cloud::start().await;
    cloud.s3.create_bucket().bucket("paranix-lock-test").send().await.expect("bucket");
    let memory = MemoryCloud::new();
    memory.set_delay(Duration::from_millis(200));
    let ws = cloud.ws.clone().with_providers(|p| p.register(&["test_thing"], Arc::new(memory.clone())));
    let build = |value: &str| {
        let mut stack = Stack::new("locked").backend(Backend::s3("paranix-lock-test", "locked"));
        stack.add(Thing::new("a").value(value));
        Project::new().stack(stack)
    };
    let mut lineage = None;
    for round in 0..20 {
        let (a, b) = (build(&format!("a{round}")), build(&format!("b{round}")));
        let plan_a = ops::plan(&a, &ws, &PlanRequest::default(), &Silent).await.expect("plan a");
        let plan_b = ops::plan(&b, &ws, &PlanRequest::default(), &Silent).await.expect("plan b");
        let options = ApplyOptions::default();
        let (ra, rb) = tokio::join!(ops::apply(&a, &ws, &plan_a, &options), ops::apply(&b, &ws, &plan_b, &options));
        let (winner, loser) = match (ra, rb) {
            (Ok(r), Err(e)) => (("a", r), e),
            (Err(e), Ok(r)) => (("b", r), e),
            (ra, rb) => panic!("round {round}: exactly one run must proceed: {:?} / {:?}", ra.err(), rb.err()),
        };
        assert_eq!(loser.kind(), ErrorKind::LockHeld, "round {round}: {loser}");
        assert!(loser.to_string().contains("for `apply`") && loser.to_string().contains("pid"), "{loser}");
        winner.1.into_iter().for_each(|r| assert!(r.is_success()));

        // The state is whole, of one lineage, and holds the winner's value.
        let state = ops::state(&a, &ws, "locked").await.expect("state parses");
        let value = &state.resources[&"test_thing.a".parse().expect("address")].inputs["value"];
        assert_eq!(value.as_str(), Some(format!("{}{round}", winner.0).as_str()), "round {round}");
        assert!(lineage.get_or_insert(state.lineage.clone()) == &state.lineage);
        assert!(state.pending.is_empty());
    }
}

#[tokio::test]
async fn a_no_op_plan_makes_a_fixed_number_of_requests_whatever_the_number_of_resources() {
    // 50 instances, each with its own security group: the no-op plan reads each kind in one batched
    // request per page (at most 3 per kind), not one per resource.
    let cloud = Cloud::start().await;
    let images = cloud.ec2.describe_images().send().await.expect("images");
    let ami = images.images().first().and_then(|i| i.image_id()).expect("moto ships public images").to_owned();
    let mut stack = Stack::new("fleet");
    for i in 0..50 {
        let sg = stack.add(ec2::SecurityGroup::new(format!("web{i}")).ingress(ec2::Rule::tcp(443).cidr("10.0.0.0/8")));
        stack.add(ec2::Instance::new(format!("web{i}")).ami(ami.as_str()).security_group(sg.id()));
    }
    let project = Project::new().stack(stack);
    let plan = ops::plan(&project, &cloud.ws, &PlanRequest::default(), &Silent).await.expect("plan");
    let options = ApplyOptions { parallelism: 50, ..ApplyOptions::default() };
    for report in ops::apply(&project, &cloud.ws, &plan, &options).await.expect("apply") {
        report.into_result().expect("applied");
    }

    let before = cloud.aws.request_counts().snapshot();
    let plan = ops::plan(&project, &cloud.ws, &PlanRequest::default(), &Silent).await.expect("plan");
    assert!(plan.is_empty(), "{plan}");
    let after = cloud.aws.request_counts().snapshot();
    let ec2 = after["ec2"] - before.get("ec2").copied().unwrap_or(0);
    // Security groups: one DescribeSecurityGroups; instances: one DescribeInstances and one DescribeVolumes
    // (root volumes). Two kinds, at most 3 requests each.
    assert!(ec2 <= 6, "{ec2} EC2 requests for a no-op plan of 100 resources");
    assert_eq!(after.get("s3"), before.get("s3"), "local state, no S3");
}

#[tokio::test]
async fn up_and_destroy_succeed_through_server_errors_throttling_and_dropped_connections() {
    // 10 % 5xx, 10 % throttling, 2 % dropped connections, injected before requests reach moto; the SDK's one
    // retry layer (jittered backoff) absorbs them. The final state matches moto's inventory.
    use paranix_tests::proxy::{Faults, LatencyProxy};
    let cloud = Cloud::start().await;
    let faults = Faults { server_errors: 0.10, throttling: 0.10, resets: 0.02 };
    let proxy = LatencyProxy::with_faults(([127, 0, 0, 1], cloud.moto_port()).into(), Duration::from_millis(1), faults);
    let options = paranix::aws::AwsOptions {
        region: Some("us-east-1".into()),
        endpoint_url: Some(proxy.endpoint()),
        poll_interval: Some(Duration::from_millis(20)),
        static_credentials: Some(("test".into(), "test".into())),
        // At a 22 % fault rate, 10 attempts leave about one request in a million failing.
        max_attempts: Some(10),
        ..paranix::aws::AwsOptions::default()
    };
    let aws = Arc::new(paranix::aws::AwsContext::load(&options).await.expect("aws"));
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = paranix::ops::Workspace::new(dir.path()).with_aws(aws);
    let image = dir.path().join("nixos.raw");
    sparse_image(&image, 16 << 20, 4);
    let project = stacks::project_infrastructure(&ImageSource::File(image), "t3.micro");

    let plan = ops::plan(&project, &ws, &PlanRequest::default(), &Silent).await.expect("plan");
    for report in ops::apply(&project, &ws, &plan, &ApplyOptions::default()).await.expect("apply") {
        report.into_result().expect("up succeeds despite the faults");
    }
    let again = ops::plan(&project, &ws, &PlanRequest::default(), &Silent).await.expect("plan");
    assert!(again.is_empty(), "{again}");
    assert_eq!(
        ours(&cloud).await,
        Inventory { buckets: 2, roles: 1, images: 1, snapshots: 1, key_pairs: 1, security_groups: 1, instances: 1 }
    );

    let request = PlanRequest {
        destroy: true,
        stacks: vec!["aws_image".into(), "printerfacts".into()],
        ..PlanRequest::default()
    };
    let plan = ops::plan(&project, &ws, &request, &Silent).await.expect("plan destroy");
    for report in ops::apply(&project, &ws, &plan, &ApplyOptions::default()).await.expect("destroy") {
        report.into_result().expect("destroy succeeds despite the faults");
    }
    assert_eq!(ours(&cloud).await, Inventory { buckets: 1, ..Inventory::default() });
    assert!(proxy.injected() > 10, "faults were injected: {} of {} requests", proxy.injected(), proxy.requests());
}
