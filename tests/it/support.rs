//! Shared test fixtures: a workspace in a temporary directory backed by an in-memory cloud.

use std::sync::Arc;

use paranix::apply::{ApplyOptions, ApplyReport};
use paranix::events::Silent;
use paranix::ops::{self, PlanRequest, Workspace};
use paranix::plan::ProjectPlan;
use paranix::prelude::*;
use paranix::state::State;
use paranix::testing::MemoryCloud;

pub(crate) struct Env {
    _dir: tempfile::TempDir,
    pub(crate) cloud: MemoryCloud,
    pub(crate) ws: Workspace,
}

impl Env {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let cloud = MemoryCloud::new();
        let ws = Workspace::new(dir.path()).with_providers(|p| p.fallback(Arc::new(cloud.clone())));
        Env { _dir: dir, cloud, ws }
    }

    pub(crate) async fn plan(&self, project: &Project) -> ProjectPlan {
        self.plan_with(project, &PlanRequest::default()).await
    }

    pub(crate) async fn plan_with(&self, project: &Project, request: &PlanRequest) -> ProjectPlan {
        ops::plan(project, &self.ws, request, &Silent).await.expect("plan")
    }

    pub(crate) async fn apply(&self, project: &Project, plan: &ProjectPlan, parallelism: usize) -> Vec<ApplyReport> {
        let options = ApplyOptions { parallelism, ..ApplyOptions::default() };
        ops::apply(project, &self.ws, plan, &options).await.expect("apply runs")
    }

    /// Plans and applies, expecting every step to succeed.
    pub(crate) async fn up(&self, project: &Project) {
        let plan = self.plan(project).await;
        for report in self.apply(project, &plan, 10).await {
            report.into_result().expect("apply succeeds");
        }
    }

    /// Plans a destroy and applies it.
    pub(crate) async fn destroy(&self, project: &Project) {
        let plan = self.plan_with(project, &PlanRequest { destroy: true, ..PlanRequest::default() }).await;
        for report in self.apply(project, &plan, 10).await {
            report.into_result().expect("destroy succeeds");
        }
    }

    pub(crate) async fn state(&self, project: &Project, stack: &str) -> State {
        ops::state(project, &self.ws, stack).await.expect("state")
    }
}

pub(crate) fn one(stack: Stack) -> Project {
    Project::new().stack(stack)
}

/// An example binary of the SDK, which `cargo test --workspace` builds next to the test binary.
pub(crate) fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test --workspace` (it builds the examples)",
        path.display()
    );
    path
}
