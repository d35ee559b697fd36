//! Deploying NixOS systems over SSH against real sshd targets with their own /nix (the rig), with fake
//! systems whose `switch-to-configuration` follows NixOS 26.05's contract (exit codes, the non-blocking lock,
//! `check`, `test`/`switch`/`boot`; `tests/nix/fake-system.nix`) and can be told to fail or be slow.
//!
//! Time windows derive from the measured login time to the target: the connect timeout is ten logins (at
//! least 2 s), the confirmation window the shortest a deployment with up to three health checks accepts (a
//! health deadline per check + two connect timeouts), so a busy machine stretches them instead of failing the
//! tests.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paranix::apply::ApplyOptions;
use paranix::events::{Event, Silent};
use paranix::nixos::{Deployment, HealthCheck};
use paranix::ops::{self, PlanRequest, Workspace};
use paranix::prelude::*;
use paranix_tests::rig::{Rig, Target};

/// Timing for a target: connect timeout and health deadline.
#[derive(Clone, Copy)]
struct Windows {
    connect: Duration,
    health: Duration,
}

impl Windows {
    /// Measures one fresh login to `target`.
    fn measure(target: &Target) -> Windows {
        let started = Instant::now();
        target.ssh("true");
        let login = started.elapsed();
        let connect = (login * 10).max(Duration::from_secs(2));
        Windows { connect: Duration::from_secs(connect.as_secs_f64().ceil() as u64), health: Duration::from_secs(2) }
    }

    /// The shortest confirmation window a deployment with up to three health checks accepts.
    fn confirm(&self) -> Duration {
        self.health * 3 + self.connect * 2
    }
}

/// A deployment of `toplevel` to `target`, pinned to the target's host key, with a health check on the host.
fn deployment(name: &str, rig: &Rig, target: &Target, toplevel: &str) -> Deployment {
    let w = Windows::measure(target);
    Deployment::new(name)
        .host(target.addr())
        .port(i64::from(target.port()))
        .host_key(target.host_public_key())
        .identity_file(rig.client_key())
        .toplevel(toplevel)
        .connect_timeout(w.connect)
        .health_deadline(w.health)
        .confirm_within(w.confirm())
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

    /// Plans and applies; returns the error of a failed run. `on_note` sees every progress note as it happens
    /// (and may block the deploy).
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

    async fn plan(&self, project: &Project) -> paranix::plan::ProjectPlan {
        ops::plan(project, &self.ws, &PlanRequest::default(), &Silent).await.expect("plan")
    }
}

/// SSH masters to `target` still running (an `ssh -M` of this process with the target's port), and work
/// directories (holding key copies) for it left in TMPDIR. (Other tests of this binary run at the same time:
/// only what belongs to this target counts.)
fn leftovers(target: &Target) -> (Vec<String>, Vec<String>) {
    let ours = format!("paranix-ssh-{}-", std::process::id());
    let port = format!("Port={} ", target.port());
    let dirs: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .expect("read TMPDIR")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&ours))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("known_hosts"))
                .is_ok_and(|k| k.contains(&format!("]:{} ", target.port())))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    (masters_matching(&ours).into_iter().filter(|m| m.contains(&port)).collect(), dirs)
}

/// Command lines of running `ssh -M` processes that mention `needle`.
fn masters_matching(needle: &str) -> Vec<String> {
    master_pids(needle).into_iter().map(|(_, cmdline)| cmdline).collect()
}

/// PIDs and command lines of running `ssh -M` processes that mention `needle`.
fn master_pids(needle: &str) -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).ok()?).replace('\0', " ");
            (cmdline.starts_with("ssh ") && cmdline.contains(" -M ") && cmdline.contains(needle))
                .then_some((pid, cmdline))
        })
        .collect()
}

/// Kills (SIGKILL, by PID) the SSH masters of this test process.
fn kill_masters() {
    for (pid, _) in master_pids(&format!("paranix-ssh-{}-", std::process::id())) {
        let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
}

/// Waits until `done` holds, up to `within`.
async fn eventually(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < until, "{what} did not happen within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `Accepted publickey` lines in the target's sshd log: one per SSH login.
fn logins(target: &Target) -> usize {
    std::fs::read_to_string(target.dir().join("sshd.log")).unwrap_or_default().matches("Accepted publickey").count()
}

#[tokio::test]
async fn a_first_deploy_copies_switches_and_confirms_over_one_master_and_leaves_nothing_behind() {
    let rig = Rig::new();
    let target = rig.target("first");
    let gen1 = rig.build_system("gen1", "first-deploy");
    let d = Deploy::new();
    let project = project(vec![deployment("first", &rig, &target, &gen1)]);
    let before = logins(&target);
    d.up(&project, |_| {}).await.expect("deploy");
    assert_eq!(target.current_system().as_deref(), Some(gen1.as_str()));
    assert_eq!(target.profile().as_deref(), Some(gen1.as_str()));
    // Checked, activated with `test` (the boot default untouched), made the boot default once confirmed.
    assert_eq!(target.switch_log(), format!("check {gen1}\ntest {gen1}\nboot {gen1}\n"));
    assert_eq!(target.boot_system().as_deref(), Some(gen1.as_str()));
    let closure = rig.closure(&gen1);
    assert!(closure.iter().all(|p| target.has_path(p)), "the whole closure arrived");
    assert!(d.notes().contains(&format!("copying {} of {} paths", closure.len(), closure.len())), "{}", d.notes());
    // Multiplexed: the master, the fresh login after activation, the command health check and the
    // confirmation (itself a fresh login); the copy and every other command went through the master.
    assert_eq!(logins(&target) - before, 4, "{}", d.notes());
    // Decided once, by the deployer; the host's script is gone, and nothing of the deploy is left here.
    let decided: Vec<String> = target.markers().into_iter().filter(|m| m.starts_with("decided-")).collect();
    assert_eq!(decided.len(), 1, "{:?}", target.markers());
    assert_eq!(target.marker(&format!("{}/by", decided[0])).as_deref(), Some("confirmed\n"));
    eventually(Duration::from_secs(5), "the host's deploy script ending", || target.namespace_pids().len() == 1).await;
    assert_eq!(leftovers(&target), (vec![], vec![]), "no SSH master and no work directory (with the key copy) left");

    // Nothing changed: the plan is empty.
    assert!(d.plan(&project).await.is_empty());

    // The same toplevel deployed again under another resource: nothing travels, nothing switches.
    let again = Deploy::new();
    again.up(&self::project(vec![deployment("first", &rig, &target, &gen1)]), |_| {}).await.expect("redeploy");
    assert!(again.notes().contains("unchanged"), "{}", again.notes());
    assert!(!again.notes().contains("copying"), "{}", again.notes());
    assert_eq!(target.switch_log().lines().count(), 3);

    // A one-path change (a new toplevel over the same packages) copies exactly one path.
    let gen2 = rig.build_system("gen2", "first-deploy");
    let next = self::project(vec![deployment("first", &rig, &target, &gen2)]);
    let plan = d.plan(&next).await;
    assert!(plan.to_string().contains(&format!("~ toplevel = \"{gen1}\" -> \"{gen2}\"")), "{plan}");
    d.notes.lock().expect("mutex").clear();
    d.up(&next, |_| {}).await.expect("update");
    assert!(d.notes().contains(&format!("copying 1 of {} paths", closure.len())), "{}", d.notes());
    assert_eq!(target.current_system().as_deref(), Some(gen2.as_str()));
}

#[tokio::test]
async fn a_failure_before_activation_puts_the_profile_back_and_one_after_rolls_the_system_back() {
    let rig = Rig::new();
    let target = rig.target("failing");
    let gen1 = rig.build_system("gen1", "failing");
    let gen2 = rig.build_system("gen2", "failing");
    let d = Deploy::new();
    d.up(&project(vec![deployment("h", &rig, &target, &gen1)]), |_| {}).await.expect("first deploy");

    // Exit 1 from a pre-switch check inside the switch: nothing was changed, nothing goes back.
    target.fail_next_switch(1);
    let log_before = target.switch_log();
    let err = d.up(&project(vec![deployment("h", &rig, &target, &gen2)]), |_| {}).await.expect_err("must fail");
    let text = err.to_string();
    assert!(text.contains("the pre-switch checks failed"), "{text}");
    assert!(text.contains(&format!("nothing was changed; the host runs {gen1}")), "{text}");
    assert_eq!(target.switch_log()[log_before.len()..], format!("check {gen2}\ntest {gen2} exit=1\n"));
    assert_eq!(target.current_system().as_deref(), Some(gen1.as_str()));
    assert_eq!(target.profile().as_deref(), Some(gen1.as_str()));
    let state = ops::state(&project(vec![]), &d.ws, "hosts").await.expect("state");
    let recorded = &state.resources[&"nixos_deployment.h".parse().expect("address")].inputs["toplevel"];
    assert_eq!(recorded.as_str(), Some(gen1.as_str()), "the state records the system that runs");

    // Exit 1 after the switch stopped units (an internal error before activation): /run/current-system did not
    // move, but the host changed: gen1 is activated again, which starts what was stopped.
    target.fail_after_stopping_units();
    let log_before = target.switch_log();
    let err = d.up(&project(vec![deployment("h", &rig, &target, &gen2)]), |_| {}).await.expect_err("must fail");
    let text = err.to_string();
    assert!(text.contains(&format!("rolled back to {gen1}: activation failed (exit 1)")), "{text}");
    assert_eq!(target.switch_log()[log_before.len()..], format!("check {gen2}\ntest {gen2} exit=1\ntest {gen1}\n"));

    // Exit 2 (the activation script failed after /run/current-system moved) and exit 4 (units failed after
    // a complete activation): the host's script switches back to gen1, and says so. The boot default never moved.
    for code in [2, 4] {
        let log_before = target.switch_log();
        target.fail_next_switch(code);
        let err = d.up(&project(vec![deployment("h", &rig, &target, &gen2)]), |_| {}).await.expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains(&format!("rolled back to {gen1}: activation failed (exit {code})")), "{text}");
        assert_eq!(
            target.switch_log()[log_before.len()..],
            format!("check {gen2}\ntest {gen2} exit={code}\ntest {gen1}\n"),
            "gen2 was activated (and failed), then gen1 activated again"
        );
        assert_eq!(target.current_system().as_deref(), Some(gen1.as_str()));
        assert_eq!(target.profile().as_deref(), Some(gen1.as_str()));
        assert_eq!(target.boot_system().as_deref(), Some(gen1.as_str()));
    }
}

#[tokio::test]
async fn a_failing_health_check_rolls_back_on_the_host_and_the_error_says_what_runs() {
    let rig = Rig::new();
    let target = rig.target("unhealthy");
    let gen1 = rig.build_system("gen1", "unhealthy");
    let gen2 = rig.build_system("gen2", "unhealthy");
    let d = Deploy::new();
    d.up(&project(vec![deployment("h", &rig, &target, &gen1)]), |_| {}).await.expect("first deploy");
    let sick =
        deployment("h", &rig, &target, &gen2).health_check(HealthCheck::command(["test", "-e", "/run/no-such-file"]));
    let err = d.up(&project(vec![sick]), |_| {}).await.expect_err("must fail");
    let text = err.to_string();
    assert!(text.contains("health check `test -e /run/no-such-file` failed"), "{text}");
    assert!(text.contains(&format!("rolled back to {gen1}")), "{text}");
    assert!(text.contains(&format!("the host runs {gen1}")), "{text}");
    assert_eq!(target.current_system().as_deref(), Some(gen1.as_str()));
    assert_eq!(target.profile().as_deref(), Some(gen1.as_str()));
    let verdicts: Vec<String> = target
        .markers()
        .into_iter()
        .filter(|m| m.starts_with("decided-"))
        .filter_map(|m| target.marker(&format!("{m}/by")))
        .collect();
    assert!(verdicts.contains(&"deployer\n".to_owned()), "the deployer asked for the rollback: {verdicts:?}");
}

#[tokio::test]
async fn a_system_whose_logins_run_something_else_is_rolled_back() {
    // A `ForceCommand` (or a key's `command=`) leaves logins working but runs its own command instead of the one
    // asked for: no later deploy could run anything. The fresh login after activation must echo a value only
    // this run knows.
    let rig = Rig::new();
    let target = rig.target("forced");
    let gen1 = rig.build_system_with_sshd("gen1", "forced", "");
    let forced = rig.build_system_with_sshd("gen2", "forced", "ForceCommand /bin/true\n");
    let d = Deploy::new();
    d.up(&project(vec![deployment("h", &rig, &target, &gen1)]), |_| {}).await.expect("first deploy");
    let err = d.up(&project(vec![deployment("h", &rig, &target, &forced)]), |_| {}).await.expect_err("must fail");
    let text = err.to_string();
    assert!(text.contains("a fresh SSH login after activation did not run the command it was given"), "{text}");
    assert!(text.contains(&format!("rolled back to {gen1}")), "{text}");
    assert_eq!(target.current_system().as_deref(), Some(gen1.as_str()));
    assert_eq!(target.profile().as_deref(), Some(gen1.as_str()), "the boot default never moved");
    // The previous system's login settings are back: the next run sees the host as declared.
    let again = d.plan(&project(vec![deployment("h", &rig, &target, &gen1)])).await;
    assert!(again.is_empty(), "{again}");
}

#[tokio::test]
async fn losing_the_host_after_activation_makes_it_roll_back_by_itself() {
    let rig = Rig::new();
    let target = Arc::new(Mutex::new(rig.target("lost")));
    let (gen1, gen2) = (rig.build_system("gen1", "lost"), rig.build_system("gen2", "lost"));
    let d = Deploy::new();
    let first = deployment("h", &rig, &target.lock().expect("mutex"), &gen1);
    let window = Windows::measure(&target.lock().expect("mutex")).confirm();
    d.up(&project(vec![first]), |_| {}).await.expect("first deploy");

    // The moment the deployer tries a fresh login after activation, the host's sshd dies: no confirmation,
    // and no rollback request, can reach it.
    let second = deployment("h", &rig, &target.lock().expect("mutex"), &gen2);
    let killer = target.clone();
    let err = d
        .up(&project(vec![second]), move |note| {
            if note.contains("logging in afresh") {
                killer.lock().expect("mutex").kill_sshd();
            }
        })
        .await
        .expect_err("must fail");
    let text = err.to_string();
    assert!(text.contains("a fresh SSH login after activation failed"), "{text}");
    assert!(text.contains(&format!("it rolls back to {gen1} by itself")), "{text}");
    assert_eq!(target.lock().expect("mutex").current_system().as_deref(), Some(gen2.as_str()), "activated first");
    // The watchdog puts the old system back with nobody connected.
    let (t, g) = (target.clone(), gen1.clone());
    eventually(window + Duration::from_secs(10), "the watchdog's rollback", move || {
        t.lock().expect("mutex").current_system().as_deref() == Some(g.as_str())
    })
    .await;
    assert_eq!(target.lock().expect("mutex").profile().as_deref(), Some(gen1.as_str()));
}

#[tokio::test]
async fn a_run_interrupted_after_activation_is_confirmed_by_the_next_run_and_never_reverts_later() {
    // Stale watchdog, case (a): the operator interrupts the run (twice) right after activation; the host runs
    // the new system, unconfirmed. The next plan must not say "no changes" (the host would revert a window
    // later): it shows the unconfirmed deploy, and the next `up` checks and confirms it.
    let rig = Rig::new();
    let target = rig.target("interrupted");
    let (gen1, gen2) = (rig.build_system("gen1", "interrupted"), rig.build_system("gen2", "interrupted"));
    let window = Windows::measure(&target).confirm();
    let d = Arc::new(Deploy::new());
    d.up(&project(vec![deployment("h", &rig, &target, &gen1)]), |_| {}).await.expect("first deploy");
    let next = project(vec![deployment("h", &rig, &target, &gen2)]);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = Mutex::new(Some(tx));
    let run = {
        let (d, next) = (d.clone(), next.clone());
        tokio::spawn(async move {
            let _ = d
                .up(&next, move |note| {
                    if note.contains("logging in afresh")
                        && let Some(tx) = tx.lock().expect("mutex").take()
                    {
                        let _ = tx.send(());
                        // Hold the deploy here until it is aborted.
                        std::thread::sleep(Duration::from_millis(500));
                    }
                })
                .await;
        })
    };
    rx.await.expect("the deploy reached the fresh login");
    run.abort();
    let _ = run.await;
    assert_eq!(target.current_system().as_deref(), Some(gen2.as_str()));
    // The interrupted run's SSH master is closed and its work directory removed as the deploy future drops.
    eventually(Duration::from_secs(5), "the interrupted run's cleanup", || leftovers(&target) == (vec![], vec![]))
        .await;

    let plan = d.plan(&next).await;
    let text = plan.to_string();
    assert!(text.contains("(unconfirmed deploy ") && text.contains(&format!("reverts to {gen1} at ")), "{text}");
    d.notes.lock().expect("mutex").clear();
    d.up(&next, |_| {}).await.expect("the rerun confirms");
    assert!(d.notes().contains("confirming the interrupted deploy"), "{}", d.notes());
    assert!(!d.notes().contains("activating"), "nothing is switched again: {}", d.notes());
    assert_eq!(target.profile().as_deref(), Some(gen2.as_str()), "confirmed, then made the boot default");
    // A window later the host still runs gen2: the watchdog was stopped, not merely outraced.
    tokio::time::sleep(window + Duration::from_secs(2)).await;
    assert_eq!(target.current_system().as_deref(), Some(gen2.as_str()));
    assert!(d.plan(&next).await.is_empty());
    assert_eq!(target.namespace_pids().len(), 1, "no watchdog left running");
}

#[tokio::test]
async fn a_deploy_lost_during_activation_is_cancelled_by_the_next_one_and_never_reverts_it() {
    // Stale watchdog, case (b): the connection drops during a slow activation; a later deploy (of another
    // system) takes over: it waits for that activation, cancels its watchdog, and inherits its rollback target.
    let rig = Rig::new();
    let target = Arc::new(Mutex::new(rig.target("lostact")));
    let (gen1, gen2, gen3) =
        (rig.build_system("gen1", "lostact"), rig.build_system("gen2", "lostact"), rig.build_system("gen3", "lostact"));
    let window = Windows::measure(&target.lock().expect("mutex")).confirm();
    let d = Deploy::new();
    let first = deployment("h", &rig, &target.lock().expect("mutex"), &gen1);
    d.up(&project(vec![first]), |_| {}).await.expect("gen1");
    target.lock().expect("mutex").slow_activation(3);
    let killer = target.clone();
    // A long window: the deploy that takes over comes well before this one's watchdog would fire.
    let lost = deployment("h", &rig, &target.lock().expect("mutex"), &gen2).confirm_within(Duration::from_secs(300));
    let err = d
        .up(&project(vec![lost]), move |note| {
            if note.contains("activating") {
                killer.lock().expect("mutex").kill_sshd();
            }
        })
        .await
        .expect_err("the host went away");
    assert!(err.to_string().contains("stopped answering during activation"), "{err}");
    target.lock().expect("mutex").restart_sshd();
    std::fs::remove_file(target.lock().expect("mutex").dir().join("run/fake-nixos/activation-seconds")).expect("rm");

    let gen3_deploy = deployment("h", &rig, &target.lock().expect("mutex"), &gen3);
    d.up(&project(vec![gen3_deploy]), |_| {}).await.expect("gen3");
    // The lost deploy's watchdog is decided (cancelled) and its script stopped: it can never revert gen3. And
    // gen3's own window passes without a rollback.
    eventually(Duration::from_secs(5), "the cancelled script ending", || {
        target.lock().expect("mutex").namespace_pids().len() == 1
    })
    .await;
    tokio::time::sleep(window + Duration::from_secs(2)).await;
    assert_eq!(target.lock().expect("mutex").current_system().as_deref(), Some(gen3.as_str()));
    let markers = target.lock().expect("mutex").markers();
    let cancelled = markers
        .iter()
        .filter(|m| m.starts_with("decided-"))
        .filter_map(|m| target.lock().expect("mutex").marker(&format!("{m}/by")))
        .filter(|by| by.starts_with("cancelled-by-"))
        .count();
    assert_eq!(cancelled, 1, "{markers:?}");
}

#[tokio::test]
async fn slow_health_checks_never_race_the_watchdog_and_windows_too_short_for_them_are_refused() {
    let rig = Rig::new();
    let target = rig.target("slowcheck");
    let (gen1, gen2) = (rig.build_system("gen1", "slowcheck"), rig.build_system("gen2", "slowcheck"));
    let w = Windows::measure(&target);
    let d = Deploy::new();
    d.up(&project(vec![deployment("h", &rig, &target, &gen1)]), |_| {}).await.expect("gen1");
    // A check that passes only after most of its deadline; the window starts when activation ends, so the
    // host cannot roll back while the check may still pass.
    let health = Duration::from_secs(6);
    let slow = deployment("h", &rig, &target, &gen2)
        .health_deadline(health)
        .confirm_within(health * 2 + w.connect * 2)
        .health_check(HealthCheck::command(["sh", "-c", "sleep 4; true"]));
    d.up(&project(vec![slow]), |_| {}).await.expect("confirmed in time");
    tokio::time::sleep(health * 2 + w.connect * 2 + Duration::from_secs(2)).await;
    assert_eq!(target.current_system().as_deref(), Some(gen2.as_str()));

    // A window shorter than the checks plus two logins is refused before anything happens.
    let mut stack = Stack::new("hosts");
    stack.add(
        deployment("h", &rig, &target, &gen1)
            .health_deadline(Duration::from_secs(60))
            .confirm_within(Duration::from_secs(61)),
    );
    let err = stack.check().expect_err("refused").to_string();
    assert!(err.contains("nixos_deployment.h") && err.contains("confirm_within"), "{err}");
    assert!(err.contains("for each of the 1 health check(s) plus two connect timeouts"), "{err}");
}

#[tokio::test]
async fn a_late_confirmation_fails_and_names_the_system_the_host_runs() {
    // The deployer stalls (a suspended laptop) between the health checks and the confirmation, past the
    // window: the host's watchdog decides first; the confirmation must not claim success.
    let rig = Rig::new();
    let target = rig.target("late");
    let (gen1, gen2) = (rig.build_system("gen1", "late"), rig.build_system("gen2", "late"));
    let window = Windows::measure(&target).confirm();
    let d = Deploy::new();
    d.up(&project(vec![deployment("h", &rig, &target, &gen1)]), |_| {}).await.expect("gen1");
    let stall = window + Duration::from_secs(3);
    let err = d
        .up(&project(vec![deployment("h", &rig, &target, &gen2)]), move |note| {
            if note.ends_with("confirming") {
                std::thread::sleep(stall);
            }
        })
        .await
        .expect_err("too late");
    let text = err.to_string();
    assert!(text.contains("the host decided first (watchdog)"), "{text}");
    assert!(text.contains(&format!("rolled back to {gen1}")), "{text}");
    assert!(text.contains(&format!("the host runs {gen1}")), "{text}");
    assert_eq!(target.current_system().as_deref(), Some(gen1.as_str()));
}

#[tokio::test]
async fn an_interrupted_rollback_still_completes_on_the_host() {
    // The deployer asks for the rollback and loses the host at once: the rollback runs detached on the host
    // (as the forward switch did), not in the SSH session, so it finishes anyway.
    let rig = Rig::new();
    let target = Arc::new(Mutex::new(rig.target("rollback")));
    let (gen1, gen2) = (rig.build_system("gen1", "rollback"), rig.build_system("gen2", "rollback"));
    let d = Deploy::new();
    let first = deployment("h", &rig, &target.lock().expect("mutex"), &gen1);
    d.up(&project(vec![first]), |_| {}).await.expect("gen1");
    target.lock().expect("mutex").slow_activation(2);
    let sick = deployment("h", &rig, &target.lock().expect("mutex"), &gen2).health_check(HealthCheck::command([
        "test",
        "-e",
        "/run/no-such-file",
    ]));
    let killer = target.clone();
    let err = d
        .up(&project(vec![sick]), move |note| {
            if note.ends_with("rolling back on the host") {
                // The request reached the host; cut it off mid-rollback (activation takes 2 s).
                killer.lock().expect("mutex").kill_sshd();
            }
        })
        .await
        .expect_err("fails");
    let text = err.to_string();
    assert!(text.contains("health check"), "{text}");
    assert!(text.contains("did not report back") && text.contains("the host does not answer"), "{text}");
    let (t, g) = (target.clone(), gen1.clone());
    eventually(Duration::from_secs(20), "the detached rollback", move || {
        t.lock().expect("mutex").current_system().as_deref() == Some(g.as_str())
    })
    .await;
    assert_eq!(target.lock().expect("mutex").profile().as_deref(), Some(gen1.as_str()));
}

#[tokio::test]
async fn test_activates_without_touching_the_boot_default_even_when_it_rolls_back() {
    let rig = Rig::new();
    let target = rig.target("testaction");
    let (gen1, gen2) = (rig.build_system("gen1", "testaction"), rig.build_system("gen2", "testaction"));
    let d = Deploy::new();
    d.up(&project(vec![deployment("h", &rig, &target, &gen1)]), |_| {}).await.expect("gen1");
    d.up(&project(vec![deployment("h", &rig, &target, &gen2).action("test")]), |_| {}).await.expect("test gen2");
    assert_eq!(target.current_system().as_deref(), Some(gen2.as_str()));
    assert_eq!(target.profile().as_deref(), Some(gen1.as_str()), "`test` is not the boot default");
    assert!(target.switch_log().ends_with(&format!("test {gen2}\n")), "{}", target.switch_log());

    // A failing `test` deploy goes back with `test` too: the profile never moves.
    let gen3 = rig.build_system("gen3", "testaction");
    let sick = deployment("h", &rig, &target, &gen3).action("test").health_check(HealthCheck::command([
        "test",
        "-e",
        "/run/no-such-file",
    ]));
    d.up(&project(vec![sick]), |_| {}).await.expect_err("fails");
    assert_eq!(target.current_system().as_deref(), Some(gen2.as_str()));
    assert_eq!(target.profile().as_deref(), Some(gen1.as_str()));
    assert!(target.switch_log().ends_with(&format!("test {gen3}\ntest {gen2}\n")), "{}", target.switch_log());
}

#[tokio::test]
async fn exit_100_records_the_running_system_and_the_boot_default_apart_and_the_next_plan_is_empty() {
    let rig = Rig::new();
    let target = rig.target("reboot");
    let gen1 = rig.build_system("gen1", "reboot");
    let d = Deploy::new();
    d.up(&project(vec![deployment("h", &rig, &target, &gen1)]), |_| {}).await.expect("gen1");
    // A system whose init is incompatible with the running one: switch-to-configuration exits 100 before
    // activating anything; the boot loader already points at it.
    let gen2 = rig.build_system_with_init("gen2", "reboot", "systemd-next");
    let next = project(vec![deployment("h", &rig, &target, &gen2)]);
    d.up(&next, |_| {}).await.expect("installed for the next boot");
    assert!(d.notes().contains("switch-to-configuration exit 100"), "{}", d.notes());
    assert_eq!(target.current_system().as_deref(), Some(gen1.as_str()), "nothing was activated");
    assert_eq!(target.profile().as_deref(), Some(gen2.as_str()));
    assert_eq!(target.boot_system().as_deref(), Some(gen2.as_str()));
    assert!(target.switch_log().ends_with(&format!("test {gen2} exit=100\nboot {gen2}\n")), "{}", target.switch_log());
    let state = ops::state(&next, &d.ws, "hosts").await.expect("state");
    let outputs = &state.resources[&"nixos_deployment.h".parse().expect("address")].outputs;
    assert_eq!(outputs["current_system"].as_str(), Some(gen1.as_str()));
    assert_eq!(outputs["boot_system"].as_str(), Some(gen2.as_str()));
    // Not drift on every plan: the host waits for its reboot.
    let plan = d.plan(&next).await;
    assert!(plan.is_empty(), "{plan}");

    // `test` installs nothing: an exit 100 is a failure that changed nothing.
    let gen3 = rig.build_system_with_init("gen3", "reboot", "systemd-other");
    let err = d
        .up(&project(vec![deployment("h", &rig, &target, &gen3).action("test")]), |_| {})
        .await
        .expect_err("not activated");
    let text = err.to_string();
    assert!(
        text.contains("not activated: switch-to-configuration exit 100") && text.contains("nothing was installed"),
        "{text}"
    );
    assert_eq!(target.profile().as_deref(), Some(gen2.as_str()));
}

#[tokio::test]
async fn until_the_confirmation_the_host_boots_the_last_confirmed_system() {
    // A crash or reboot of the host between activation and confirmation must not leave it booting the
    // unconfirmed system: the boot default moves only once the deploy is confirmed.
    let rig = Rig::new();
    let target = Arc::new(Mutex::new(rig.target("bootdefault")));
    let (gen1, gen2) = (rig.build_system("gen1", "bootdefault"), rig.build_system("gen2", "bootdefault"));
    let d = Deploy::new();
    let first = deployment("h", &rig, &target.lock().expect("mutex"), &gen1);
    d.up(&project(vec![first]), |_| {}).await.expect("gen1");
    let seen = Arc::new(Mutex::new(None));
    let (t, s2) = (target.clone(), seen.clone());
    let second = deployment("h", &rig, &target.lock().expect("mutex"), &gen2);
    d.up(&project(vec![second]), move |note| {
        if note.contains("logging in afresh") {
            let t = t.lock().expect("mutex");
            *s2.lock().expect("mutex") = Some((t.current_system(), t.profile(), t.boot_system()));
        }
    })
    .await
    .expect("gen2");
    let (current, profile, boot) = seen.lock().expect("mutex").clone().expect("observed before the confirmation");
    assert_eq!(current.as_deref(), Some(gen2.as_str()), "activated");
    assert_eq!(profile.as_deref(), Some(gen1.as_str()), "but the profile still names the confirmed system");
    assert_eq!(boot.as_deref(), Some(gen1.as_str()), "and so does the boot loader");
    let t = target.lock().expect("mutex");
    assert_eq!((t.profile(), t.boot_system()), (Some(gen2.clone()), Some(gen2.clone())), "after the confirmation");
}

#[tokio::test]
async fn inhibitors_stop_a_deploy_before_anything_changes_and_a_held_lock_is_waited_for() {
    let rig = Rig::new();
    let target = rig.target("inhibited");
    let (gen1, gen2) = (rig.build_system("gen1", "inhibited"), rig.build_system("gen2", "inhibited"));
    let d = Deploy::new();
    d.up(&project(vec![deployment("h", &rig, &target, &gen1)]), |_| {}).await.expect("gen1");
    target.inhibit_switch("dbus-implementation: dbus -> broker");
    let err = d.up(&project(vec![deployment("h", &rig, &target, &gen2)]), |_| {}).await.expect_err("inhibited");
    let text = err.to_string();
    assert!(text.contains("the pre-switch checks of") && text.contains("nothing was changed"), "{text}");
    assert!(text.contains("dbus-implementation: dbus -> broker"), "{text}");
    assert_eq!(target.profile().as_deref(), Some(gen1.as_str()));
    assert!(!target.markers().iter().any(|m| m.starts_with("armed-") && !target.switch_log().contains("gen2 exit")));

    // NixOS skips the inhibitors for `boot` (its own advice: "run 'nixos-rebuild boot'"): a boot deploy passes.
    d.up(&project(vec![deployment("h", &rig, &target, &gen2).action("boot")]), |_| {}).await.expect("boot");
    assert_eq!(target.profile().as_deref(), Some(gen2.as_str()));
    assert_eq!(target.current_system().as_deref(), Some(gen1.as_str()));

    // Another switch holds the lock (NixOS takes it non-blocking: a second switch fails at once): the deploy
    // waits for it instead of failing.
    target.clear_inhibitor();
    target.hold_switch_lock(3);
    d.up(&project(vec![deployment("h", &rig, &target, &gen2)]), |_| {}).await.expect("waits for the lock");
    assert!(d.notes().contains("holds the host's switch lock; waiting"), "{}", d.notes());
    assert_eq!(target.current_system().as_deref(), Some(gen2.as_str()));
}

#[tokio::test]
async fn a_closure_of_two_thousand_paths_is_checked_over_stdin_not_one_command_line() {
    let rig = Rig::new();
    let target = rig.target("large");
    let system = rig.build_large_system("gen1", "large-closure", 2000);
    let closure = rig.closure(&system);
    assert!(closure.len() >= 2000);
    // As one remote command line (sshd runs it as one `sh -c` argument), the paths exceed Linux's 128 KiB
    // limit on a single argument: E2BIG.
    let line = format!("nix-store --check-validity --print-invalid {}", closure.join(" "));
    let spawned = std::process::Command::new("/bin/sh").args(["-c", &format!("true {line}")]).output();
    let e2big = spawned.expect_err("one argument of over 128 KiB");
    assert_eq!(e2big.raw_os_error(), Some(7), "{e2big}");
    let d = Deploy::new();
    d.up(&project(vec![deployment("h", &rig, &target, &system)]), |_| {}).await.expect("deploy");
    assert!(d.notes().contains(&format!("copying {0} of {0} paths", closure.len())), "{}", d.notes());
    assert_eq!(target.current_system().as_deref(), Some(system.as_str()));
}

#[tokio::test]
async fn losing_the_master_before_the_copy_never_loosens_the_host_key_check() {
    let rig = Rig::new();
    let target = Arc::new(Mutex::new(rig.target("nomaster")));
    let gen1 = rig.build_system("gen1", "nomaster");
    let d = Deploy::new();
    // The master dies right before the copy: the copy connects on its own, with the same pinned options.
    let deploy = deployment("h", &rig, &target.lock().expect("mutex"), &gen1);
    d.up(&project(vec![deploy]), move |note| {
        if note.contains("copying") {
            kill_masters();
        }
    })
    .await
    .expect("deploys without the master");
    assert_eq!(target.lock().expect("mutex").current_system().as_deref(), Some(gen1.as_str()));

    // The same, but another host answers by the time the copy connects: refused, nothing copied.
    let gen2 = rig.build_system("gen2", "nomaster-2");
    let t = target.clone();
    let second = deployment("h", &rig, &target.lock().expect("mutex"), &gen2);
    let err = d
        .up(&project(vec![second]), move |note| {
            if note.contains("copying") {
                kill_masters();
                t.lock().expect("mutex").rotate_host_key();
            }
        })
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("copying the closure failed"), "{err}");
    assert!(err.to_string().contains("Host key verification failed"), "{err}");
    assert!(!target.lock().expect("mutex").has_path(&gen2));
}

#[tokio::test]
async fn a_wrong_host_key_is_refused_before_anything_is_copied_and_trust_on_first_use_pins_the_first() {
    let rig = Rig::new();
    let mut target = rig.target("impostor");
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

    // Trust on first use: the first key is learnt and recorded, and a different one later is refused.
    let tofu = || deployment("h", &rig, &target, &system).trust_host_key_on_first_use();
    let d = Deploy::new();
    d.up(&project(vec![tofu()]), |_| {}).await.expect("first use");
    let state = ops::state(&project(vec![]), &d.ws, "hosts").await.expect("state");
    let learnt = state.resources[&"nixos_deployment.h".parse().expect("address")].outputs["host_public_key"].clone();
    assert_eq!(learnt.as_str(), Some(target.host_public_key().as_str()));
    let tofu = tofu();
    target.rotate_host_key();
    let err = ops::plan(&project(vec![tofu]), &d.ws, &PlanRequest::default(), &Silent).await.expect_err("refused");
    assert!(err.to_string().contains("host key verification failed"), "{err}");
}

#[tokio::test]
async fn a_host_key_rotated_in_the_configuration_is_applied_normally() {
    let rig = Rig::new();
    let mut target = rig.target("rotated");
    let system = rig.build_system("gen1", "rotated");
    let d = Deploy::new();
    d.up(&project(vec![deployment("h", &rig, &target, &system)]), |_| {}).await.expect("deploy");
    let old_key = target.host_public_key();
    target.rotate_host_key();
    // The configuration pins the new key: refresh trusts it (the configuration wins), the plan shows the change,
    // and applying it needs no `--no-refresh`.
    let rotated = project(vec![deployment("h", &rig, &target, &system)]);
    let plan = d.plan(&rotated).await;
    let text = plan.to_string();
    assert!(text.contains(&format!("~ pinned = \"{old_key}\" -> \"{}\"", target.host_public_key())), "{text}");
    d.up(&rotated, |_| {}).await.expect("applied");
    assert!(d.plan(&rotated).await.is_empty());
}

#[tokio::test]
async fn on_a_systemd_host_the_switch_runs_as_a_transient_unit() {
    let rig = Rig::new();
    let target = rig.target("systemd");
    target.pretend_systemd();
    let system = rig.build_system("gen1", "systemd");
    let d = Deploy::new();
    d.up(&project(vec![deployment("h", &rig, &target, &system)]), |_| {}).await.expect("deploy");
    let units = target.systemd_units();
    assert_eq!(units.len(), 1, "{units:?}");
    assert!(units[0].starts_with("paranix-deploy-"), "{units:?}");
    assert_eq!(target.current_system().as_deref(), Some(system.as_str()));
}

#[tokio::test]
async fn a_non_root_deploy_user_with_sudo_deploys_when_the_host_trusts_it_and_is_told_why_not_otherwise() {
    let rig = Rig::new();
    let trusted = rig.target("trusted");
    trusted.add_sudo_user("deploy", true);
    let untrusted = rig.target("untrusted");
    untrusted.add_sudo_user("deploy", false);
    let system = rig.build_system("gen1", "sudo-user");
    let d = Deploy::new();
    d.up(&project(vec![deployment("h", &rig, &trusted, &system).user("deploy")]), |_| {}).await.expect("deploy");
    assert_eq!(trusted.current_system().as_deref(), Some(system.as_str()));
    assert_eq!(trusted.profile().as_deref(), Some(system.as_str()));

    let d = Deploy::new();
    let err = d
        .up(&project(vec![deployment("h", &rig, &untrusted, &system).user("deploy")]), |_| {})
        .await
        .expect_err("unsigned paths are refused");
    let text = err.to_string();
    assert!(text.contains("refuses unsigned paths from \"deploy\""), "{text}");
    assert!(text.contains("trusted-users"), "{text}");
    assert_eq!(untrusted.current_system(), None);
}

#[test]
fn hosts_users_and_health_paths_that_could_inject_are_refused_at_plan_time() {
    let base = || {
        Deployment::new("h")
            .host("203.0.113.7")
            .host_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGGAnHvDOf0i+aTNe0fWIk6ALm/QE+rdE5q5wqLq0Hxk")
            .identity_file("/root/.ssh/id")
            .toplevel("/nix/store/00000000000000000000000000000000-nixos-system")
    };
    for (deployment, field) in [
        (base().host("-oProxyCommand=touch /tmp/pwned"), "host"),
        (base().host("a b"), "host"),
        (base().user("-oProxyCommand=x"), "user"),
        (base().health_check(HealthCheck::http(80, "/fact\r\nX-Evil: 1")), "health_checks[0].http"),
        (base().health_check(HealthCheck::http(80, "fact")), "health_checks[0].http"),
        (base().identity_file("/root/my key"), "identity_file"),
        (base().toplevel("/nix/store/../../root/x"), "toplevel"),
        (base().toplevel("/nix/store/00000000000000000000000000000000-nixos-system/"), "toplevel"),
        (base().confirm_within(Duration::MAX), "confirm_within"),
        (base().health_deadline(Duration::MAX), "health_deadline"),
        (base().connect_timeout(Duration::MAX), "connect_timeout"),
    ] {
        let mut stack = Stack::new("hosts");
        stack.add(deployment);
        let err = stack.check().expect_err("refused").to_string();
        assert!(err.contains(&format!("nixos_deployment.h: `{field}`")) || err.contains(field), "{field}: {err}");
    }
    let mut stack = Stack::new("hosts");
    stack.add(base());
    stack.check().expect("the base is valid");
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
    assert_eq!(leftovers(&target), (vec![], vec![]), "the key copy is gone with the deploy");
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

#[test]
fn a_run_killed_at_any_deploy_phase_leaves_masters_and_key_copies_that_the_next_run_cleans() {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};

    let rig = Rig::new();
    let target = rig.target("killed");
    let key = std::fs::read_to_string(rig.client_key()).expect("the rig's client key");
    let w = Windows::measure(&target);
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str], state: &std::path::Path, toplevel: &str| {
        let mut command = Command::new(crate::support::example("deploy"));
        command
            .args(args)
            .env("DEPLOY_HOST", target.addr())
            .env("DEPLOY_PORT", target.port().to_string())
            .env("DEPLOY_HOST_KEY", target.host_public_key())
            .env("DEPLOY_TOPLEVEL", toplevel)
            .env("DEPLOY_SSH_KEY", &key)
            .env("DEPLOY_CONNECT_SECS", w.connect.as_secs().to_string())
            .env("DEPLOY_HEALTH_SECS", w.health.as_secs().to_string())
            .env("DEPLOY_CONFIRM_SECS", w.confirm().as_secs().to_string())
            .env("PARANIX_STATE_DIR", state)
            .env("TMPDIR", tmp.path())
            .env_remove("AWS_REGION")
            .stdin(Stdio::null());
        command
    };
    let ours = |pid: u32| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(tmp.path())
            .expect("read TMPDIR")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("paranix-ssh-{pid}-"))))
            .collect()
    };
    let tmp_path = tmp.path().display().to_string();
    for (i, phase) in ["connecting", "copying", "activating", "logging in afresh", "confirming"].into_iter().enumerate()
    {
        let toplevel = rig.build_system(&format!("gen{i}"), "killed");
        let state = tempfile::tempdir().expect("state");
        let mut child = run(&["up", "--yes"], state.path(), &toplevel).stderr(Stdio::piped()).spawn().expect("spawn");
        let pid = child.id();
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut seen = Vec::new();
        for line in stderr.lines() {
            let line = line.expect("read stderr");
            let reached = line.contains(&format!(": {phase}"));
            seen.push(line);
            if reached {
                break;
            }
        }
        // SIGKILL: no destructor, no signal handler runs.
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        let _ = child.wait();
        let dirs = ours(pid);
        assert_eq!(dirs.len(), 1, "killed at {phase:?}: its work directory is left ({seen:?})");
        assert!(dirs[0].join("id").exists(), "killed at {phase:?}: with the private key copy in it");
        if phase != "connecting" {
            assert_eq!(masters_matching(&tmp_path).len(), 1, "killed at {phase:?}: and its SSH master");
        }

        // The next run (any command that can deploy) finds and cleans them.
        let next = run(&["plan"], state.path(), &toplevel).output().expect("run plan");
        assert!(ours(pid).is_empty(), "killed at {phase:?}: the work directory was not cleaned: {next:?}");
        eventually_blocking(Duration::from_secs(5), || masters_matching(&tmp_path).is_empty());
        assert!(masters_matching(&tmp_path).is_empty(), "killed at {phase:?}: the master still runs");
    }
}

/// Waits (blocking) until `done` holds or `within` passes.
fn eventually_blocking(within: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !done() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn independent_stacks_deploy_at_the_same_time_and_a_failed_one_holds_back_its_dependents() {
    let rig = Rig::new();
    let targets: Vec<Target> = (0..4).map(|i| rig.target(&format!("s{i}"))).collect();
    let system = rig.build_system("gen1", "stacks");
    for t in &targets {
        t.slow_activation(2);
    }
    // Four one-host stacks, nothing between them: their activations overlap.
    let mut project = Project::new();
    for (i, t) in targets.iter().enumerate() {
        let mut stack = Stack::new(format!("host{i}"));
        stack.add(deployment("h", &rig, t, &system));
        project = project.stack(stack);
    }
    let d = Deploy::new();
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = order.clone();
    d.up(&project, move |note| seen.lock().expect("mutex").push(note.to_owned())).await.expect("all four");
    let order = order.lock().expect("mutex").clone();
    let first_done = order.iter().position(|n| n.contains("logging in afresh")).expect("a login");
    let activating = order[..first_done].iter().filter(|n| n.contains("activating")).count();
    assert_eq!(activating, 4, "all four activations started before any finished: {order:#?}");
    for t in &targets {
        assert_eq!(t.current_system().as_deref(), Some(system.as_str()));
    }

    // A stack that reads another's outputs waits for it, and is not started when it fails; an independent one
    // goes ahead.
    let (base_t, app_t, other_t) = (rig.target("base"), rig.target("app"), rig.target("other"));
    base_t.fail_next_switch(4);
    let mut base = Stack::new("base");
    base.add(deployment("h", &rig, &base_t, &system));
    let mut app = Stack::new("app");
    app.add(RemoteState::of(&base));
    app.add(deployment("h", &rig, &app_t, &system));
    let mut other = Stack::new("other");
    other.add(deployment("h", &rig, &other_t, &system));
    let project = Project::new().stack(base).stack(app).stack(other);
    let plan = ops::plan(&project, &d.ws, &PlanRequest::default(), &Silent).await.expect("plan");
    let reports = ops::apply(&project, &d.ws, &plan, &ApplyOptions::default()).await.expect("apply runs");
    let by_stack = |name: &str| reports.iter().find(|r| r.stack == name).expect("a report per stack");
    assert_eq!(by_stack("base").failed.len(), 1);
    assert_eq!(by_stack("app").held_back.as_deref(), Some("stack \"base\" failed first"));
    assert_eq!(by_stack("app").not_started.len(), 1, "its deployment: {:?}", by_stack("app"));
    assert!(by_stack("other").is_success(), "{:?}", by_stack("other"));
    assert_eq!(app_t.current_system(), None);
    assert_eq!(other_t.current_system().as_deref(), Some(system.as_str()));
    let err = reports.into_iter().find(|r| r.stack == "app").expect("app").into_result().expect_err("held back");
    assert!(err.to_string().contains("stack \"app\" not started"), "{err}");
}

#[tokio::test]
async fn a_deploy_started_while_the_host_rolls_back_waits_for_it_and_never_takes_the_failed_system_for_the_previous() {
    let rig = Rig::new();
    let target = rig.target("duringrollback");
    let (gen1, gen2, gen3) = (
        rig.build_system("gen1", "duringrollback"),
        rig.build_system("gen2", "duringrollback"),
        rig.build_system("gen3", "duringrollback"),
    );
    let d = Arc::new(Deploy::new());
    d.up(&project(vec![deployment("h", &rig, &target, &gen1)]), |_| {}).await.expect("gen1");
    // gen2 fails its check; its rollback (an activation of gen1) takes 3 s.
    let sick =
        deployment("h", &rig, &target, &gen2).health_check(HealthCheck::command(["test", "-e", "/run/no-such-file"]));
    target.slow_activation(3);
    let first = {
        let d = d.clone();
        tokio::spawn(async move { d.up(&project(vec![sick]), |_| {}).await })
    };
    eventually(Duration::from_secs(30), "the rollback starting", || {
        target
            .markers()
            .iter()
            .any(|m| m.starts_with("decided-") && target.marker(&format!("{m}/by")).as_deref() == Some("deployer\n"))
    })
    .await;
    // Meanwhile another deploy (of gen3, which fails too): it waits for the rollback, and goes back to gen1.
    let second = Deploy::new();
    let err = second
        .up(
            &project(vec![deployment("h", &rig, &target, &gen3).health_check(HealthCheck::command([
                "test",
                "-e",
                "/run/nope",
            ]))]),
            |_| {},
        )
        .await
        .expect_err("gen3 fails too");
    assert!(second.notes().contains("to finish on the host"), "{}", second.notes());
    assert!(err.to_string().contains(&format!("rolled back to {gen1}")), "{err}");
    assert_eq!(target.current_system().as_deref(), Some(gen1.as_str()));
    first.await.expect("the first run").expect_err("gen2 failed");
}

#[tokio::test]
async fn two_deploys_to_one_host_at_once_end_with_one_decision_each_and_one_system() {
    let rig = Rig::new();
    let target = rig.target("race");
    let (gen1, gen2, gen3) =
        (rig.build_system("gen1", "race"), rig.build_system("gen2", "race"), rig.build_system("gen3", "race"));
    let d = Deploy::new();
    d.up(&project(vec![deployment("h", &rig, &target, &gen1)]), |_| {}).await.expect("gen1");
    target.slow_activation(2);
    let (a, b) = (Deploy::new(), Deploy::new());
    let (pa, pb) =
        (project(vec![deployment("h", &rig, &target, &gen2)]), project(vec![deployment("h", &rig, &target, &gen3)]));
    let (ra, rb) = tokio::join!(a.up(&pa, |_| {}), b.up(&pb, |_| {}));
    // Either one took the host over from the other (which then fails, naming what the host runs), or they ran
    // one after the other (the host's lock); either way the host runs and boots one of them.
    let outcomes = [(&gen2, &ra), (&gen3, &rb)];
    let current = target.current_system().expect("a system");
    assert!(current == gen2 || current == gen3, "{current}");
    assert_eq!(target.profile().as_deref(), Some(current.as_str()), "runs what it boots");
    let winners: Vec<&String> = outcomes.iter().filter(|(_, r)| r.is_ok()).map(|(g, _)| *g).collect();
    if let [winner] = winners.as_slice() {
        assert_eq!(current.as_str(), winner.as_str(), "{ra:?} {rb:?}");
    }
    for (_, r) in outcomes {
        if let Err(e) = r {
            let text = e.to_string();
            assert!(text.contains("the host runs") || text.contains("nothing changed"), "{text}");
        }
    }
    // No deploy script is left waiting: nothing can revert the host later.
    eventually(Duration::from_secs(20), "every deploy script ending", || target.namespace_pids().len() == 1).await;
}

#[tokio::test]
async fn a_boot_default_that_could_not_be_written_shows_as_drift_and_the_next_up_writes_it() {
    let rig = Rig::new();
    let target = rig.target("bootfail");
    let (gen1, gen2) = (rig.build_system("gen1", "bootfail"), rig.build_system("gen2", "bootfail"));
    let d = Deploy::new();
    d.up(&project(vec![deployment("h", &rig, &target, &gen1)]), |_| {}).await.expect("gen1");
    target.fail_bootloader(true);
    let next = project(vec![deployment("h", &rig, &target, &gen2)]);
    let err = d.up(&next, |_| {}).await.expect_err("the boot loader cannot be written");
    let text = err.to_string();
    assert!(text.contains("activated and confirmed, but making it the boot default failed"), "{text}");
    assert!(text.contains(&format!("the host runs {gen2} and boots {gen1}")), "{text}");
    assert_eq!(target.current_system().as_deref(), Some(gen2.as_str()));
    assert_eq!(target.profile().as_deref(), Some(gen1.as_str()), "the profile went back with the failed write");
    // Not "no changes": the host would boot gen1 again.
    let plan = d.plan(&next).await;
    assert!(plan.to_string().contains(&format!("{gen2} (boots {gen1})")), "{plan}");
    target.fail_bootloader(false);
    d.up(&next, |_| {}).await.expect("written this time");
    assert_eq!(target.profile().as_deref(), Some(gen2.as_str()));
    assert!(d.plan(&next).await.is_empty());
}

#[tokio::test]
async fn the_hosts_own_rollback_is_not_stopped_by_a_switch_inhibitor() {
    // Going back to the system that ran is what an inhibitor must never prevent: the rollback skips the
    // pre-switch checks.
    let rig = Rig::new();
    let target = Arc::new(Mutex::new(rig.target("inhibitedback")));
    let (gen1, gen2) = (rig.build_system("gen1", "inhibitedback"), rig.build_system("gen2", "inhibitedback"));
    let d = Deploy::new();
    let first = deployment("h", &rig, &target.lock().expect("mutex"), &gen1);
    d.up(&project(vec![first]), |_| {}).await.expect("gen1");
    let sick = deployment("h", &rig, &target.lock().expect("mutex"), &gen2).health_check(HealthCheck::command([
        "test",
        "-e",
        "/run/no-such-file",
    ]));
    let t = target.clone();
    let err = d
        .up(&project(vec![sick]), move |note| {
            if note.contains("logging in afresh") {
                t.lock().expect("mutex").inhibit_switch("systemd: 259 -> 260");
            }
        })
        .await
        .expect_err("unhealthy");
    assert!(err.to_string().contains(&format!("rolled back to {gen1}")), "{err}");
    assert_eq!(target.lock().expect("mutex").current_system().as_deref(), Some(gen1.as_str()));
}

#[tokio::test]
async fn deploy_keys_are_checked_without_showing_them() {
    let rig = Rig::new();
    let target = rig.target("keys");
    let system = rig.build_system("gen1", "keys");
    let key = std::fs::read_to_string(rig.client_key()).expect("key");
    let with_key = |key: String| {
        Deployment::new("h")
            .host(target.addr())
            .port(i64::from(target.port()))
            .host_key(target.host_public_key())
            .private_key(key)
            .toplevel(system.clone())
    };
    // A key pasted with CRLF line ends works.
    let d = Deploy::new();
    d.up(&project(vec![with_key(key.replace('\n', "\r\n"))]), |_| {}).await.expect("CRLF key");
    assert_eq!(target.current_system().as_deref(), Some(system.as_str()));

    // A path instead of the key, and a passphrase-protected key: refused, saying why, showing nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let protected = dir.path().join("protected");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "secret passphrase", "-f"])
        .arg(&protected)
        .output()
        .expect("ssh-keygen");
    assert!(made.status.success());
    let protected = std::fs::read_to_string(&protected).expect("read");
    for (key, why) in [
        (rig.client_key().display().to_string(), "not an OpenSSH private key (a file path?"),
        (protected.clone(), "protected by a passphrase"),
    ] {
        let d = Deploy::new();
        let err = d.up(&project(vec![with_key(key.clone())]), |_| {}).await.expect_err("refused").to_string();
        assert!(err.contains("field `ssh_private_key`") && err.contains(why), "{err}");
        if let Some(body) = key.lines().nth(2) {
            assert!(!err.contains(body), "the error shows the key");
        }
    }
}
