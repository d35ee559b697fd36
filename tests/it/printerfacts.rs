//! Plans of the reference workflow's three stacks, snapshot-tested: from empty state, and from recorded
//! states where one thing changed.

use std::sync::Arc;

use paranix::apply::ApplyOptions;
use paranix::events::Silent;
use paranix::ops::{self, PlanRequest, Workspace};
use paranix::prelude::*;
use paranix::testing::MemoryCloud;

use crate::printerfacts_stacks::project;

/// A workspace in a temporary directory, backed by an in-memory cloud.
fn workspace(dir: &std::path::Path) -> (Workspace, MemoryCloud) {
    let cloud = MemoryCloud::new();
    let ws = Workspace::new(dir).with_local_state_only().with_providers(|p| p.fallback(Arc::new(cloud.clone())));
    (ws, cloud)
}

/// Applies the whole project from empty state, one step at a time (so invented ids are deterministic).
async fn applied(dir: &std::path::Path) -> (Workspace, MemoryCloud) {
    let (ws, cloud) = workspace(dir);
    let plan = ops::plan(&project(), &ws, &PlanRequest::default(), &Silent).await.expect("plan");
    let options = ApplyOptions { parallelism: 1, ..ApplyOptions::default() };
    for report in ops::apply(&project(), &ws, &plan, &options).await.expect("apply") {
        report.into_result().expect("every step succeeds");
    }
    (ws, cloud)
}

/// Rewrites one recorded input of one resource in a stack's state file (a "recorded state" fixture).
fn edit_state(dir: &std::path::Path, stack: &str, address: &str, field: &str, value: serde_json::Value) {
    let path = dir.join(format!("{stack}.json"));
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    state["resources"][address]["inputs"][field] = value;
    std::fs::write(&path, serde_json::to_string_pretty(&state).expect("json")).expect("write");
}

async fn plan_text(ws: &Workspace, no_refresh: bool) -> String {
    let request = PlanRequest { no_refresh, ..PlanRequest::default() };
    ops::plan(&project(), ws, &request, &Silent).await.expect("plan").to_string()
}

#[tokio::test]
async fn from_empty_state_every_resource_of_the_three_stacks_is_created() {
    // A fresh checkout: no state anywhere, no cloud to read.
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = Workspace::new(dir.path()).with_local_state_only();
    let plan = ops::plan(&project(), &ws, &PlanRequest::default(), &Silent).await.expect("plan");
    let summary = plan.summary();
    assert_eq!((summary.add, summary.change, summary.destroy), (13, 0, 0));
    insta::assert_snapshot!(plan.to_string());
}

#[tokio::test]
async fn after_up_the_plan_is_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ws, cloud) = applied(dir.path()).await;
    let plan = ops::plan(&project(), &ws, &PlanRequest::default(), &Silent).await.expect("plan");
    assert!(plan.is_empty(), "{plan}");
    // Refresh read each kind in one call, not one call per resource.
    let reads = cloud.calls().iter().filter(|c| matches!(c, paranix::testing::Call::Read(..))).count();
    assert_eq!(reads, 13, "one batched read per kind and stack: {:?}", cloud.calls());
}

#[tokio::test]
async fn a_recorded_instance_type_change_is_one_in_place_update() {
    // The state says t3.small, the program says t3.micro: exactly one update, nothing replaced.
    let dir = tempfile::tempdir().expect("tempdir");
    let (ws, _cloud) = applied(dir.path()).await;
    edit_state(dir.path(), "printerfacts", "aws_instance.printerfacts", "instance_type", "t3.small".into());
    let text = plan_text(&ws, true).await;
    assert!(text.contains("Total: 0 to add, 1 to change, 0 to destroy."), "{text}");
    insta::assert_snapshot!(text);
}

#[tokio::test]
async fn a_new_nixos_image_replaces_the_snapshot_the_ami_and_the_instance() {
    // The recorded image was built from another configuration: the image is rebuilt, the upload updated,
    // the snapshot and the AMI replaced, and the instance replaced because its AMI id is not known until
    // the new AMI exists.
    let dir = tempfile::tempdir().expect("tempdir");
    let (ws, _cloud) = applied(dir.path()).await;
    edit_state(dir.path(), "aws_image", "nixos_image.printerfacts", "configuration", "examples/old/host.nix".into());
    let text = plan_text(&ws, true).await;
    assert!(text.contains("aws_instance.printerfacts must be replaced: `ami` forces replacement"), "{text}");
    insta::assert_snapshot!(text);
}

#[tokio::test]
async fn destroying_the_protected_state_bucket_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ws, cloud) = applied(dir.path()).await;
    let calls_before = cloud.calls().len();
    let request = PlanRequest { destroy: true, no_refresh: true, ..PlanRequest::default() };
    let err = ops::plan(&project(), &ws, &request, &Silent).await.expect_err("protected");
    assert_eq!(err.kind(), ErrorKind::Protected);
    assert_eq!(cloud.calls().len(), calls_before, "nothing was called");
    insta::assert_snapshot!(err.to_string());
}
