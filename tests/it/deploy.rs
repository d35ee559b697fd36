//! Deploying NixOS systems over SSH against real sshd targets with their own /nix (the rig), with fake
//! systems whose `switch-to-configuration` records what it did and can be told to fail.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use paranix::apply::ApplyOptions;
use paranix::events::{Event, Silent};
use paranix::nixos::{Deployment, HealthCheck};
use paranix::ops::{self, PlanRequest, Workspace};
use paranix::prelude::*;
use paranix_tests::rig::{Rig, Target};

/// A deployment of `toplevel` to `target`, pinned to the target's host key, with a health check on the host.
fn deployment(name: &str, rig: &Rig, target: &Target, toplevel: &str) -> Deployment {
    Deployment::new(name)
        .host(target.addr())
        .port(i64::from(target.port()))
        .host_key(target.host_public_key())
        .identity_file(rig.client_key())
        .toplevel(toplevel)
        .confirm_within(Duration::from_secs(3))
        .health_deadline(Duration::from_secs(2))
        .health_check(HealthCheck::command(["test", "-e", "/run/current-system"]))
}

fn project(deployments: Vec<Deployment>) -> Project {
    let mut stack = Stack::new("hosts");
    for d in deployments {
        stack.add(d);
    }
    Project::new().stack(stack)
}

/// A workspace and the progress notes of the last run.
struct Deploy {
    _dir: tempfile::TempDir,
    ws: Workspace,
    notes: Arc<Mutex<Vec<String>>>,
}

impl Deploy {
    fn new() -> Deploy {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = Workspace::new(dir.path()).with_deployer();
        Deploy { _dir: dir, ws, notes: Arc::new(Mutex::new(Vec::new())) }
    }

    /// Plans and applies; returns the error of a failed run.
    async fn up(&self, project: &Project, on_note: impl Fn(&str) + Send + Sync + 'static) -> Result<()> {
        let plan = ops::plan(project, &self.ws, &PlanRequest::default(), &Silent).await?;
        let notes = self.notes.clone();
        let observer = Arc::new(move |e: &Event| {
            let text = serde_json::to_string(e).expect("events serialise");
            if let Event::Progress { message, .. } = e {
                on_note(message);
            }
            notes.lock().expect("mutex").push(text);
        });
        let options = ApplyOptions { observer, ..ApplyOptions::default() };
        for report in ops::apply(project, &self.ws, &plan, &options).await? {
            report.into_result()?;
        }
        Ok(())
    }

    fn notes(&self) -> String {
        self.notes.lock().expect("mutex").join("\n")
    }
}

#[tokio::test]
async fn a_first_deploy_copies_switches_and_checks_and_a_redeploy_is_unchanged() {
    let rig = Rig::new();
    let target = rig.target("first");
    let gen1 = rig.build_system("gen1", "first-deploy");
    let d = Deploy::new();
    let project = project(vec![deployment("first", &rig, &target, &gen1)]);
    d.up(&project, |_| {}).await.expect("deploy");
    assert_eq!(target.current_system().as_deref(), Some(gen1.as_str()));
    assert!(target.switch_log().contains(&format!("switch {gen1}")), "{}", target.switch_log());
    let closure = rig.closure(&gen1);
    assert!(closure.iter().all(|p| target.has_path(p)), "the whole closure arrived");
    assert!(d.notes().contains(&format!("copying {} of {} paths", closure.len(), closure.len())), "{}", d.notes());

    // Nothing changed: the plan is empty.
    let plan = ops::plan(&project, &d.ws, &PlanRequest::default(), &Silent).await.expect("plan");
    assert!(plan.is_empty(), "{plan}");

    // The same toplevel deployed again under another resource: nothing travels, nothing switches.
    let again = Deploy::new();
    again.up(&self::project(vec![deployment("first", &rig, &target, &gen1)]), |_| {}).await.expect("redeploy");
    assert!(again.notes().contains("unchanged"), "{}", again.notes());
    assert!(!again.notes().contains("copying"), "{}", again.notes());
    assert_eq!(target.switch_log().lines().count(), 1);

    // A one-path change (a new toplevel over the same packages) copies exactly one path.
    let gen2 = rig.build_system("gen2", "first-deploy");
    let next = self::project(vec![deployment("first", &rig, &target, &gen2)]);
    let plan = ops::plan(&next, &d.ws, &PlanRequest::default(), &Silent).await.expect("plan");
    assert!(plan.to_string().contains(&format!("~ toplevel = \"{gen1}\" -> \"{gen2}\"")), "{plan}");
    d.notes.lock().expect("mutex").clear();
    d.up(&next, |_| {}).await.expect("update");
    assert!(d.notes().contains(&format!("copying 1 of {} paths", closure.len())), "{}", d.notes());
    assert_eq!(target.current_system().as_deref(), Some(gen2.as_str()));
}

#[tokio::test]
async fn a_failing_activation_rolls_back_and_fails_the_run() {
    let rig = Rig::new();
    let target = rig.target("failing");
    let gen1 = rig.build_system("gen1", "failing");
    let gen2 = rig.build_system("gen2", "failing");
    let d = Deploy::new();
    d.up(&project(vec![deployment("h", &rig, &target, &gen1)]), |_| {}).await.expect("first deploy");
    target.fail_next_switch(1);
    let err = d.up(&project(vec![deployment("h", &rig, &target, &gen2)]), |_| {}).await.expect_err("must fail");
    assert!(err.to_string().contains("rolled back to"), "{err}");
    assert!(err.to_string().contains("activation failed (exit 1)"), "{err}");
    assert_eq!(target.current_system().as_deref(), Some(gen1.as_str()));
    // The state still records the system that runs.
    let state = ops::state(&project(vec![]), &d.ws, "hosts").await.expect("state");
    let recorded = &state.resources[&"nixos_deployment.h".parse().expect("address")].inputs["toplevel"];
    assert_eq!(recorded.as_str(), Some(gen1.as_str()));

    // Exit 4 (activated, some units failed) is rolled back too.
    target.fail_next_switch(4);
    let err = d.up(&project(vec![deployment("h", &rig, &target, &gen2)]), |_| {}).await.expect_err("must fail");
    assert!(err.to_string().contains("some units failed (exit 4)"), "{err}");
    assert_eq!(target.current_system().as_deref(), Some(gen1.as_str()));
}

#[tokio::test]
async fn a_failing_health_check_rolls_back() {
    let rig = Rig::new();
    let target = rig.target("unhealthy");
    let gen1 = rig.build_system("gen1", "unhealthy");
    let gen2 = rig.build_system("gen2", "unhealthy");
    let d = Deploy::new();
    d.up(&project(vec![deployment("h", &rig, &target, &gen1)]), |_| {}).await.expect("first deploy");
    let sick =
        deployment("h", &rig, &target, &gen2).health_check(HealthCheck::command(["test", "-e", "/run/no-such-file"]));
    let err = d.up(&project(vec![sick]), |_| {}).await.expect_err("must fail");
    assert!(err.to_string().contains("health check `test -e /run/no-such-file` failed"), "{err}");
    assert!(err.to_string().contains("rolled back"), "{err}");
    assert_eq!(target.current_system().as_deref(), Some(gen1.as_str()));
}

#[tokio::test]
async fn losing_the_host_after_activation_makes_it_roll_back_by_itself() {
    let rig = Rig::new();
    let target = Arc::new(Mutex::new(rig.target("lost")));
    let (gen1, gen2) = (rig.build_system("gen1", "lost"), rig.build_system("gen2", "lost"));
    let d = Deploy::new();
    let first = deployment("h", &rig, &target.lock().expect("mutex"), &gen1);
    d.up(&project(vec![first]), |_| {}).await.expect("first deploy");

    // The moment the deployer tries to confirm, the host's sshd dies: no confirmation can be made.
    let second = deployment("h", &rig, &target.lock().expect("mutex"), &gen2);
    let killer = target.clone();
    let err = d
        .up(&project(vec![second]), move |note| {
            if note.contains("confirming over a fresh connection") {
                killer.lock().expect("mutex").kill_sshd();
            }
        })
        .await
        .expect_err("must fail");
    assert!(err.to_string().contains("rolled back: a fresh SSH connection after activation failed"), "{err}");
    assert_eq!(target.lock().expect("mutex").current_system().as_deref(), Some(gen2.as_str()), "activated first");
    // The watchdog (3 s) puts the old system back with nobody connected.
    let started = std::time::Instant::now();
    while target.lock().expect("mutex").current_system().as_deref() != Some(gen1.as_str()) {
        assert!(started.elapsed() < Duration::from_secs(20), "the target did not roll back by itself");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_wrong_host_key_is_refused_before_anything_is_copied() {
    let rig = Rig::new();
    let target = rig.target("impostor");
    let other = rig.target("honest");
    let system = rig.build_system("gen1", "impostor");
    let d = Deploy::new();
    // Pinned to another host's key.
    let wrong = deployment("h", &rig, &target, &system).host_key(other.host_public_key());
    let err = d.up(&project(vec![wrong]), |_| {}).await.expect_err("refused");
    let text = err.to_string();
    assert!(text.contains(&format!("refusing to deploy to 127.0.0.1:{}", target.port())), "{text}");
    assert!(text.contains("host key verification failed: expected SHA256:"), "{text}");
    assert!(text.contains("the host presented SHA256:"), "{text}");
    assert!(!target.has_path(&system), "nothing was copied");
    assert_eq!(target.current_system(), None);
}

#[tokio::test]
async fn four_hosts_deploy_in_parallel_and_one_failure_leaves_the_others_activated() {
    let rig = Rig::new();
    let targets: Vec<Target> = (1..=4).map(|i| rig.target(&format!("p{i}"))).collect();
    let system = rig.build_system("gen1", "parallel");
    targets[2].fail_next_switch(1);
    let d = Deploy::new();
    let project =
        project(targets.iter().enumerate().map(|(i, t)| deployment(&format!("h{i}"), &rig, t, &system)).collect());
    let err = d.up(&project, |_| {}).await.expect_err("one host fails");
    assert!(err.to_string().contains("1 step(s) failed"), "{err}");
    for (i, t) in targets.iter().enumerate() {
        let expected = if i == 2 { None } else { Some(system.as_str()) };
        assert_eq!(t.current_system().as_deref(), expected, "host {i}");
    }
}

#[tokio::test]
async fn the_private_key_never_appears_in_events_or_errors() {
    let rig = Rig::new();
    let target = rig.target("secret");
    let system = rig.build_system("gen1", "secret");
    let key = std::fs::read_to_string(rig.client_key()).expect("key");
    let marker = key.lines().nth(2).expect("a key body line").to_owned();
    let d = Deploy::new();
    let with_key = Deployment::new("h")
        .host(target.addr())
        .port(i64::from(target.port()))
        .host_key(target.host_public_key())
        .private_key(key.clone())
        .toplevel(system.clone())
        .health_check(HealthCheck::command(["false"]))
        .health_deadline(Duration::from_secs(1));
    let debug = format!("{with_key:?} {:?}", paranix::host::HostSpec::new("h", "host.nix").private_key(key.clone()));
    let plan =
        ops::plan(&project(vec![with_key.clone()]), &d.ws, &PlanRequest::default(), &Silent).await.expect("plan");
    let err = d.up(&project(vec![with_key]), |_| {}).await.expect_err("fails its health check");
    for (what, text) in [
        ("plan", plan.to_string()),
        ("plan json", plan.to_json()),
        ("events", d.notes()),
        ("error", err.to_string()),
        ("Debug output of the builders", debug),
    ] {
        assert!(!text.contains(&marker), "the private key leaked into the {what}");
    }
}

#[tokio::test]
async fn a_system_built_from_rust_values_is_planned_by_store_path_and_deployed() {
    // The host's configuration takes values from Rust as JSON; the toplevel's store path is known at plan
    // time, so the deployment's plan shows old and new system paths.
    let rig = Rig::new();
    let target = rig.target("built");
    let root = tempfile::tempdir().expect("tempdir");
    let nix_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("nix");
    for file in ["fake-host.nix", "fake-system.nix"] {
        std::fs::copy(nix_dir.join(file), root.path().join(file)).expect("copy");
    }
    std::fs::write(root.path().join("host.nix"), "{ }\n").expect("write");
    let builder = paranix::nixos::ImageBuilder::new(root.path(), root.path().join("gcroots"))
        .option("build-users-group", "")
        .option("sandbox", "false")
        .option("substituters", "");
    let dir = tempfile::tempdir().expect("tempdir");
    let ws =
        Workspace::new(dir.path()).with_deployer().with_providers(|p| p.register(&["nixos_system"], Arc::new(builder)));
    let build = |tag: &str| {
        let mut stack = Stack::new("hosts");
        let system = stack.add(
            paranix::nixos::System::new("web", "host.nix")
                .host_nix("fake-host.nix")
                .value::<String>("tag", tag)
                .value::<String>("salt", "built"),
        );
        stack.add(
            Deployment::new("web")
                .host(target.addr())
                .port(i64::from(target.port()))
                .host_key(target.host_public_key())
                .identity_file(rig.client_key())
                .toplevel(system.toplevel()),
        );
        Project::new().stack(stack)
    };
    let plan = ops::plan(&build("gen1"), &ws, &PlanRequest::default(), &Silent).await.expect("plan");
    let toplevel = plan.stacks[0].changes()[1].after.as_ref().expect("after")["toplevel"].as_str().map(str::to_owned);
    let toplevel = toplevel.expect("the deployment's toplevel is known at plan time");
    for report in ops::apply(&build("gen1"), &ws, &plan, &ApplyOptions::default()).await.expect("apply") {
        report.into_result().expect("deployed");
    }
    assert_eq!(target.current_system().as_deref(), Some(toplevel.as_str()));
    let again = ops::plan(&build("gen1"), &ws, &PlanRequest::default(), &Silent).await.expect("plan");
    assert!(again.is_empty(), "{again}");

    // A changed value: a new system, and the deployment shows both store paths.
    let plan = ops::plan(&build("gen2"), &ws, &PlanRequest::default(), &Silent).await.expect("plan");
    let text = plan.to_string();
    assert!(text.contains(&format!("~ toplevel = \"{toplevel}\" -> \"/nix/store/")), "{text}");
    for report in ops::apply(&build("gen2"), &ws, &plan, &ApplyOptions::default()).await.expect("apply") {
        report.into_result().expect("deployed");
    }
    assert!(
        target.current_system().is_some_and(|s| s != toplevel && s.ends_with("-gen2")),
        "{:?}",
        target.current_system()
    );
}
