//! The AWS providers through the real SDK clients against moto (with paranix's extensions), one story per
//! resource kind: create, read back equal, update in place, replace, drift, delete.

use std::sync::Arc;
use std::time::Duration;

use paranix::attr::Attr;
use paranix::aws::{AwsContext, AwsOptions};
use paranix::events::Silent;
use paranix::ops::{self, PlanRequest, Workspace};
use paranix::plan::{Action, ProjectPlan};
use paranix::prelude::*;
use paranix_tests::moto::MotoServer;

/// A moto server of its own, a workspace pointed at it, and raw SDK clients for changes behind paranix's back.
pub(crate) struct Cloud {
    /// Kept alive for the test; dropping it stops the server.
    pub(crate) _moto: MotoServer,
    pub(crate) ws: Workspace,
    pub(crate) aws: Arc<AwsContext>,
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) iam: aws_sdk_iam::Client,
    pub(crate) ec2: aws_sdk_ec2::Client,
    pub(crate) dir: tempfile::TempDir,
}

impl Cloud {
    pub(crate) async fn start() -> Cloud {
        let moto = MotoServer::start();
        let options = AwsOptions {
            region: Some("us-east-1".into()),
            endpoint_url: Some(moto.endpoint()),
            poll_interval: Some(Duration::from_millis(20)),
            static_credentials: Some(("test".into(), "test".into())),
            // One attempt: an unmodelled call fails once, not after backoff.
            max_attempts: Some(1),
            ..AwsOptions::default()
        };
        let aws = Arc::new(AwsContext::load(&options).await.expect("aws context"));
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = Workspace::new(dir.path()).with_aws(aws.clone());
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version_latest()
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(moto.endpoint())
            .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "test"))
            .force_path_style(true)
            .build();
        let s3 = aws_sdk_s3::Client::from_conf(conf);
        let shared = aws_config_for(&moto).await;
        Cloud {
            iam: aws_sdk_iam::Client::new(&shared),
            ec2: aws_sdk_ec2::Client::new(&shared),
            s3,
            _moto: moto,
            ws,
            aws,
            dir,
        }
    }

    /// The AWS server (for its test side channels).
    pub(crate) fn moto(&self) -> &MotoServer {
        &self._moto
    }

    /// The AWS server's port.
    pub(crate) fn moto_port(&self) -> u16 {
        self._moto.port()
    }

    /// Requests the AWS server has answered since it started.
    pub(crate) fn moto_requests(&self) -> u64 {
        self._moto.request_count()
    }

    pub(crate) async fn plan(&self, project: &Project) -> ProjectPlan {
        ops::plan(project, &self.ws, &PlanRequest::default(), &Silent).await.expect("plan")
    }

    pub(crate) async fn up(&self, project: &Project) -> ProjectPlan {
        let plan = self.plan(project).await;
        for report in ops::apply(project, &self.ws, &plan, &Default::default()).await.expect("apply") {
            report.into_result().expect("apply succeeds");
        }
        plan
    }

    pub(crate) async fn destroy(&self, project: &Project) {
        let request = PlanRequest { destroy: true, ..PlanRequest::default() };
        let plan = ops::plan(project, &self.ws, &request, &Silent).await.expect("plan destroy");
        for report in ops::apply(project, &self.ws, &plan, &Default::default()).await.expect("destroy") {
            report.into_result().expect("destroy succeeds");
        }
    }

    /// Plans after an apply and insists nothing changes.
    pub(crate) async fn assert_converged(&self, project: &Project) {
        let plan = self.plan(project).await;
        assert!(plan.is_empty(), "plan after up is not empty:\n{plan}");
        assert!(plan.stacks.iter().all(|p| p.drift.is_empty()), "unexpected drift:\n{plan}");
    }
}

pub(crate) async fn aws_config_for(moto: &MotoServer) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(moto.endpoint())
        .credentials_provider(aws_sdk_ec2::config::Credentials::new("test", "test", None, None, "test"))
        .load()
        .await
}

/// What exists in moto that paranix made (tagged `paranix:stack`), by kind. moto starts with hundreds of
/// public images and snapshots of its own; only ours count.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Inventory {
    pub(crate) buckets: usize,
    pub(crate) roles: usize,
    pub(crate) images: usize,
    pub(crate) snapshots: usize,
    pub(crate) key_pairs: usize,
    pub(crate) security_groups: usize,
    pub(crate) instances: usize,
}

pub(crate) async fn ours(cloud: &Cloud) -> Inventory {
    let tagged = || aws_sdk_ec2::types::Filter::builder().name("tag-key").values("paranix:stack").build();
    let ec2 = &cloud.ec2;
    let images = ec2.describe_images().owners("self").filters(tagged()).send().await.expect("images");
    let snapshots = ec2.describe_snapshots().owner_ids("self").filters(tagged()).send().await.expect("snapshots");
    let keys = ec2.describe_key_pairs().filters(tagged()).send().await.expect("key pairs");
    let groups = ec2.describe_security_groups().filters(tagged()).send().await.expect("groups");
    let instances = ec2.describe_instances().filters(tagged()).send().await.expect("instances");
    let running = instances
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated"))
        .count();
    let roles = cloud.iam.list_roles().send().await.expect("roles");
    Inventory {
        buckets: cloud.s3.list_buckets().send().await.expect("buckets").buckets().len(),
        roles: roles.roles().len(),
        images: images.images().len(),
        snapshots: snapshots.snapshots().len(),
        key_pairs: keys.key_pairs().len(),
        security_groups: groups.security_groups().len(),
        instances: running,
    }
}

pub(crate) fn one(stack: Stack) -> Project {
    Project::new().stack(stack)
}

fn action_of(plan: &ProjectPlan, address: &str) -> Action {
    let address: paranix::address::Address = address.parse().expect("address");
    plan.stacks.iter().find_map(|p| p.change(&address)).map_or(Action::NoOp, |c| c.action)
}

#[tokio::test]
async fn buckets_are_private_versioned_tagged_and_drift_is_reported() {
    let cloud = Cloud::start().await;
    let build = |versioning: bool, name: &str| {
        let mut stack = Stack::new("b");
        stack.add(s3::Bucket::new("data").bucket(name).versioning(versioning).tag("team", "infra"));
        one(stack)
    };
    cloud.up(&build(false, "paranix-test-data")).await;
    cloud.assert_converged(&build(false, "paranix-test-data")).await;
    let block = cloud.s3.get_public_access_block().bucket("paranix-test-data").send().await.expect("block");
    assert_eq!(block.public_access_block_configuration().and_then(|c| c.block_public_acls()), Some(true));
    let tags = cloud.s3.get_bucket_tagging().bucket("paranix-test-data").send().await.expect("tags");
    let keys: Vec<&str> = tags.tag_set().iter().map(|t| t.key()).collect();
    assert!(keys.contains(&"paranix:stack") && keys.contains(&"paranix:address") && keys.contains(&"team"), "{keys:?}");

    // Versioning on: an update in place.
    let plan = cloud.up(&build(true, "paranix-test-data")).await;
    assert_eq!(action_of(&plan, "aws_s3_bucket.data"), Action::Update);
    cloud.assert_converged(&build(true, "paranix-test-data")).await;

    // Someone turns the public access block off by hand: the plan shows that drift and turns it back on.
    cloud.s3.delete_public_access_block().bucket("paranix-test-data").send().await.expect("raw delete");
    let plan = cloud.plan(&build(true, "paranix-test-data")).await;
    let drift = &plan.stacks[0].drift;
    assert_eq!(drift.len(), 1, "{plan}");
    assert_eq!(drift[0].diffs.iter().map(|d| d.field.as_str()).collect::<Vec<_>>(), ["public_access_block"]);
    assert_eq!(action_of(&plan, "aws_s3_bucket.data"), Action::Update);
    cloud.up(&build(true, "paranix-test-data")).await;
    cloud.assert_converged(&build(true, "paranix-test-data")).await;

    // A new name cannot be changed in place.
    let plan = cloud.up(&build(true, "paranix-test-renamed")).await;
    assert_eq!(action_of(&plan, "aws_s3_bucket.data"), Action::Replace);
    assert!(cloud.s3.head_bucket().bucket("paranix-test-data").send().await.is_err(), "the old bucket is gone");

    cloud.destroy(&build(true, "paranix-test-renamed")).await;
    let buckets = cloud.s3.list_buckets().send().await.expect("list");
    assert!(buckets.buckets().is_empty());
}

#[tokio::test]
async fn objects_upload_once_and_again_only_when_their_content_identity_changes() {
    let cloud = Cloud::start().await;
    let file = cloud.dir.path().join("image.raw");
    std::fs::write(&file, vec![7u8; 3 << 20]).expect("write");
    let build = |file: &std::path::Path| {
        let mut stack = Stack::new("o");
        let bucket = stack.add(s3::Bucket::new("images").bucket("paranix-test-images"));
        stack.add(s3::Object::new("image").bucket(bucket.name()).key("image.raw").source_file(file));
        one(stack)
    };
    cloud.up(&build(&file)).await;
    let state = ops::state(&build(&file), &cloud.ws, "o").await.expect("state");
    let object = &state.resources[&"aws_s3_object.image".parse().expect("address")];
    let sha = object.outputs["content_sha256"].as_str().expect("sha").to_owned();
    // The hash recorded is the file's.
    let local = {
        use std::process::Command;
        let out = Command::new("sha256sum").arg(&file).output().expect("sha256sum");
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("hash").to_owned()
    };
    assert_eq!(sha, local);

    // Planning again reads nothing from the file and uploads nothing.
    let before = cloud.aws.request_counts().snapshot();
    cloud.assert_converged(&build(&file)).await;
    let after = cloud.aws.request_counts().snapshot();
    assert!(after["s3"] - before["s3"] <= 8, "a no-op plan of one bucket and one object: {before:?} -> {after:?}");

    // New content (new size): re-uploaded in place, multipart for a large file.
    std::fs::write(&file, vec![9u8; 20 << 20]).expect("write");
    let plan = cloud.up(&build(&file)).await;
    assert_eq!(action_of(&plan, "aws_s3_object.image"), Action::Update);
    let head = cloud.s3.head_object().bucket("paranix-test-images").key("image.raw").send().await.expect("head");
    assert_eq!(head.content_length(), Some(20 << 20));
    cloud.assert_converged(&build(&file)).await;
    cloud.destroy(&build(&file)).await;
    assert!(cloud.s3.head_bucket().bucket("paranix-test-images").send().await.is_err());
}

#[tokio::test]
async fn roles_and_policies_compare_canonically_and_show_policy_drift() {
    let cloud = Cloud::start().await;
    let build =
        |actions: &[&str]| {
            let mut stack = Stack::new("iam");
            let role =
                stack.add(iam::Role::new("app").assume_role_policy(iam::PolicyDocument::new().statement(
                    iam::Statement::allow().service_principal("ec2.amazonaws.com").action("sts:AssumeRole"),
                )));
            stack.add(
                iam::RolePolicy::new("read").role(role.name()).policy(
                    iam::PolicyDocument::new()
                        .statement(iam::Statement::allow().actions(actions.iter().copied()).resource("*")),
                ),
            );
            one(stack)
        };
    cloud.up(&build(&["s3:GetObject", "s3:ListBucket"])).await;
    // AWS returns the documents URL-encoded with its own formatting: still no change.
    cloud.assert_converged(&build(&["s3:ListBucket", "s3:GetObject"])).await;

    // Someone widens the policy by hand: drift, and the plan narrows it again.
    let wide = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    cloud
        .iam
        .put_role_policy()
        .role_name("app")
        .policy_name("read")
        .policy_document(wide)
        .send()
        .await
        .expect("raw put");
    let plan = cloud.plan(&build(&["s3:GetObject", "s3:ListBucket"])).await;
    assert_eq!(plan.stacks[0].drift.len(), 1, "{plan}");
    assert_eq!(action_of(&plan, "aws_iam_role_policy.read"), Action::Update);
    cloud.up(&build(&["s3:GetObject", "s3:ListBucket"])).await;
    let doc = cloud.iam.get_role_policy().role_name("app").policy_name("read").send().await.expect("get");
    assert!(!doc.policy_document().contains("\"*\",\"Resource\"") && doc.policy_document().contains("GetObject"));

    cloud.destroy(&build(&["s3:GetObject"])).await;
    assert!(cloud.iam.get_role().role_name("app").send().await.is_err(), "role deleted");
}

#[tokio::test]
async fn generated_key_pairs_keep_their_private_half_in_state_only_and_are_recreated_when_deleted() {
    let cloud = Cloud::start().await;
    let build = || {
        let mut stack = Stack::new("k");
        stack.add(ec2::KeyPair::generate("deployer"));
        one(stack)
    };
    let plan = cloud.up(&build()).await;
    assert!(plan.to_json().contains("private_key_openssh"));
    let state = ops::state(&build(), &cloud.ws, "k").await.expect("state");
    let private = state.resources[&"aws_key_pair.deployer".parse().expect("address")].outputs["private_key_openssh"]
        .as_str()
        .expect("private key")
        .to_owned();
    assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    cloud.assert_converged(&build()).await;

    // The private key never appears in a plan, not even when the pair is replaced.
    cloud.ec2.delete_key_pair().key_name("deployer").send().await.expect("raw delete");
    let plan = cloud.plan(&build()).await;
    assert_eq!(action_of(&plan, "aws_key_pair.deployer"), Action::Create);
    assert!(plan.stacks[0].drift.iter().any(|d| d.deleted));
    for text in [plan.to_string(), plan.to_json()] {
        assert!(!text.contains(&private[40..80]), "the private key leaked");
    }
    cloud.up(&build()).await;
    cloud.assert_converged(&build()).await;
    cloud.destroy(&build()).await;
    assert_eq!(ours(&cloud).await, Inventory::default());
}

#[tokio::test]
async fn security_group_rules_are_owned_exclusively() {
    let cloud = Cloud::start().await;
    let build = |description: &str| {
        let mut stack = Stack::new("sg");
        stack.add(
            ec2::SecurityGroup::new("web")
                .description(description)
                .ingress(ec2::Rule::tcp(22).anywhere().description("SSH"))
                .ingress(ec2::Rule::tcp(80).cidr("0.0.0.0/0").description("HTTP"))
                .egress(ec2::Rule::all_traffic().anywhere()),
        );
        one(stack)
    };
    cloud.up(&build("web")).await;
    cloud.assert_converged(&build("web")).await;
    let state = ops::state(&build("web"), &cloud.ws, "sg").await.expect("state");
    let id = state.resources[&"aws_security_group.web".parse().expect("address")].outputs["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // A rule added by hand is drift, and the plan removes it.
    cloud
        .ec2
        .authorize_security_group_ingress()
        .group_id(&id)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(3306)
                .to_port(3306)
                .ip_ranges(aws_sdk_ec2::types::IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .send()
        .await
        .expect("raw authorize");
    let plan = cloud.plan(&build("web")).await;
    assert_eq!(plan.stacks[0].drift.len(), 1, "{plan}");
    assert!(plan.to_string().contains("3306"), "{plan}");
    assert_eq!(action_of(&plan, "aws_security_group.web"), Action::Update);
    cloud.up(&build("web")).await;
    cloud.assert_converged(&build("web")).await;

    // The description cannot change in place.
    let plan = cloud.up(&build("web servers")).await;
    assert_eq!(action_of(&plan, "aws_security_group.web"), Action::Replace);
    cloud.destroy(&build("web servers")).await;
    assert_eq!(ours(&cloud).await, Inventory::default());
}

/// A sparse raw image: 1 GiB, with `blocks` non-zero 512 KiB blocks spread over it.
pub(crate) fn sparse_image(path: &std::path::Path, size: u64, blocks: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::File::create(path).expect("create");
    file.set_len(size).expect("set_len");
    let stride = size / 512 / 1024 / blocks.max(1);
    for i in 0..blocks {
        file.seek(SeekFrom::Start(i * stride * 512 * 1024)).expect("seek");
        file.write_all(&[i as u8 + 1; 4096]).expect("write");
    }
}

#[tokio::test]
async fn an_ebs_direct_snapshot_becomes_an_ami_and_an_instance_that_updates_in_place() {
    let cloud = Cloud::start().await;
    let image = cloud.dir.path().join("nixos.raw");
    // 1 GiB, 24 non-zero blocks: only those travel.
    sparse_image(&image, 1 << 30, 24);
    let build = |instance_type: &str, ami_name: &str| {
        let mut stack = Stack::new("host");
        let snapshot = stack.add(ebs::Snapshot::new("root").source_file(&image).description("root disk"));
        let ami = stack.add(ec2::Image::new("nixos").image_name(ami_name).root_snapshot(snapshot.id()));
        let sg = stack.add(ec2::SecurityGroup::new("host").ingress(ec2::Rule::tcp(22).cidr("10.0.0.0/8")));
        stack.add(
            ec2::Instance::new("host")
                .ami(ami.id())
                .instance_type(instance_type)
                .security_group(sg.id())
                .root_volume_size_gib(20)
                .host_key_from_console(),
        );
        one(stack)
    };
    let before = cloud.aws.request_counts().snapshot();
    cloud.up(&build("t3.micro", "nixos-1")).await;
    let after = cloud.aws.request_counts().snapshot();
    // StartSnapshot + 24 PutSnapshotBlock + CompleteSnapshot: the 2024 zero blocks were never sent.
    assert_eq!(after["ebs"] - before.get("ebs").copied().unwrap_or(0), 26, "{after:?}");
    let state = ops::state(&build("t3.micro", "nixos-1"), &cloud.ws, "host").await.expect("state");
    let snapshot = &state.resources[&"aws_ebs_snapshot.root".parse().expect("address")];
    assert_eq!(snapshot.outputs["blocks_written"], Attr::Int(24));
    let instance = state.resources[&"aws_instance.host".parse().expect("address")].clone();
    let id = instance.outputs["id"].as_str().expect("id").to_owned();
    // The host key the instance printed on its console (moto's extension prints a real ed25519 key).
    let host_key = instance.outputs["ssh_host_key"].as_str().expect("console host key").to_owned();
    assert!(
        host_key.starts_with("ssh-ed25519 AAAA") && paranix::nixos::ssh::fingerprint(&host_key).is_some(),
        "{host_key}"
    );
    let described = cloud.ec2.describe_instances().instance_ids(&id).send().await.expect("describe");
    let i = &described.reservations()[0].instances()[0];
    assert_eq!(i.metadata_options().and_then(|m| m.http_tokens()).map(|t| t.as_str()), Some("required"));
    assert!(i.tags().iter().any(|t| t.key() == Some("paranix:address") && t.value() == Some("aws_instance.host")));

    // A second plan reads neither the image file nor more than a few describes, and changes nothing. The
    // file's content changes without its size or modification time: the plan does not notice, because
    // it never reads it.
    let modified = std::fs::metadata(&image).expect("meta").modified().expect("mtime");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new().write(true).open(&image).expect("open");
        file.seek(SeekFrom::Start(1 << 20)).expect("seek");
        file.write_all(b"changed").expect("write");
        file.set_modified(modified).expect("set mtime");
    }
    let before = cloud.aws.request_counts().snapshot();
    cloud.assert_converged(&build("t3.micro", "nixos-1")).await;
    let after = cloud.aws.request_counts().snapshot();
    assert_eq!(after.get("ebs"), before.get("ebs"), "no EBS request while planning");

    // A new instance type: one in-place update (stop, modify, start), the same instance.
    let plan = cloud.up(&build("t3.small", "nixos-1")).await;
    assert_eq!(plan.summary().change, 1, "{plan}");
    assert_eq!(plan.summary().add, 0, "{plan}");
    let described = cloud.ec2.describe_instances().instance_ids(&id).send().await.expect("describe");
    assert_eq!(described.reservations()[0].instances()[0].instance_type().map(|t| t.as_str()), Some("t3.small"));
    cloud.assert_converged(&build("t3.small", "nixos-1")).await;

    // A new AMI replaces the image and, through its unknown id, the instance.
    let plan = cloud.up(&build("t3.small", "nixos-2")).await;
    assert_eq!(action_of(&plan, "aws_ami.nixos"), Action::Replace);
    assert_eq!(action_of(&plan, "aws_instance.host"), Action::Replace);
    cloud.assert_converged(&build("t3.small", "nixos-2")).await;

    cloud.destroy(&build("t3.small", "nixos-2")).await;
    assert_eq!(ours(&cloud).await, Inventory::default());
}

#[tokio::test]
async fn an_image_in_s3_is_imported_as_a_snapshot_with_the_vmimport_role() {
    let cloud = Cloud::start().await;
    let image = cloud.dir.path().join("nixos.vhd");
    std::fs::write(&image, vec![1u8; 1 << 20]).expect("write");
    let build = || {
        let mut stack = Stack::new("import");
        let bucket = stack.add(s3::Bucket::new("images").bucket("paranix-test-import"));
        let role = stack.add(iam::Role::new("vmimport").assume_role_policy(iam::PolicyDocument::new().statement(
            iam::Statement::allow().service_principal("vmie.amazonaws.com").action("sts:AssumeRole").condition(
                "StringEquals",
                "sts:Externalid",
                "vmimport",
            ),
        )));
        let object = stack.add(s3::Object::new("image").bucket(bucket.name()).key("nixos.vhd").source_file(&image));
        stack.add(ec2::SnapshotImport::new("nixos").from_object(&object).role_name(role.name()).description("nixos"));
        one(stack)
    };
    cloud.up(&build()).await;
    cloud.assert_converged(&build()).await;
    assert_eq!(ours(&cloud).await.snapshots, 1);

    // A tag added to the snapshot by hand is drift, removed in place (the snapshot is not re-imported).
    let state = ops::state(&build(), &cloud.ws, "import").await.expect("state");
    let id = state.resources[&"aws_ebs_snapshot_import.nixos".parse().expect("address")].outputs["id"]
        .as_str()
        .expect("snapshot id")
        .to_owned();
    let tag = aws_sdk_ec2::types::Tag::builder().key("owner").value("someone-else").build();
    cloud.ec2.create_tags().resources(&id).tags(tag).send().await.expect("raw tag");
    let plan = cloud.plan(&build()).await;
    assert_eq!(plan.stacks[0].drift.len(), 1, "{plan}");
    assert_eq!(action_of(&plan, "aws_ebs_snapshot_import.nixos"), Action::Update, "{plan}");
    cloud.up(&build()).await;
    cloud.assert_converged(&build()).await;
    cloud.destroy(&build()).await;
    assert_eq!(ours(&cloud).await, Inventory::default());
}

#[tokio::test]
async fn requests_that_wait_for_the_rate_limit_longer_than_the_stalled_stream_grace_are_sent_once_and_succeed() {
    // The SDK fails a request whose upload makes no progress for 20 s (stalled-stream protection's grace period,
    // aws-smithy-runtime-api `DEFAULT_GRACE_PERIOD`). The rate limit's wait must come before the request is
    // dispatched: here EC2 is held to 1 request a second and 26 plans refresh at once, so the last requests wait
    // about 25 s for their token.
    let moto = MotoServer::start();
    let options = AwsOptions {
        region: Some("us-east-1".into()),
        endpoint_url: Some(moto.endpoint()),
        poll_interval: Some(Duration::from_millis(20)),
        static_credentials: Some(("test".into(), "test".into())),
        max_attempts: Some(1),
        rate_limits: Some(std::collections::BTreeMap::from([(
            "ec2",
            paranix::aws::limit::RateLimit { per_second: 1.0, burst: 1.0 },
        )])),
    };
    let aws = Arc::new(AwsContext::load(&options).await.expect("aws context"));
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = Workspace::new(dir.path()).with_aws(aws.clone());
    let mut stack = Stack::new("paced");
    stack.add(ec2::SecurityGroup::new("sg").ingress(ec2::Rule::tcp(22).cidr("10.0.0.0/8")));
    let project = one(stack);
    let plan = ops::plan(&project, &ws, &PlanRequest::default(), &Silent).await.expect("plan");
    for report in ops::apply(&project, &ws, &plan, &Default::default()).await.expect("apply") {
        report.into_result().expect("applied");
    }
    let ec2 = || aws.request_counts().snapshot().get("ec2").copied().unwrap_or(0);
    let served = || moto.request_count();

    // One plan alone: how many EC2 requests a refresh makes.
    let (before, served_before) = (ec2(), served());
    assert!(ops::plan(&project, &ws, &PlanRequest::default(), &Silent).await.expect("plan").is_empty());
    let per_plan = ec2() - before;
    assert!(per_plan >= 1);
    assert_eq!(served() - served_before, per_plan, "counted as sent");

    let (before, served_before) = (ec2(), served());
    let started = std::time::Instant::now();
    let request = PlanRequest::default();
    let plans = (0..26).map(|_| ops::plan(&project, &ws, &request, &Silent));
    for plan in futures::future::join_all(plans).await {
        assert!(plan.expect("every plan succeeds, however long it waited").is_empty());
    }
    let elapsed = started.elapsed();
    let sent = ec2() - before;
    assert_eq!(sent, 26 * per_plan, "each request counted once, when it was sent");
    assert_eq!(served() - served_before, sent, "and the server saw exactly those");
    // The limit held: after the first token, one a second.
    let floor = Duration::from_secs_f64((sent - 1) as f64 * 0.9);
    assert!(elapsed >= floor, "{sent} requests in {elapsed:?}");
}
