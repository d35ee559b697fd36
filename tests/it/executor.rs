//! The executor against the in-memory cloud: concurrency, ordering, failures, saved plans.

use std::time::Duration;

use paranix::ops::PlanRequest;
use paranix::prelude::*;
use paranix::testing::Call;

use crate::kinds::Thing;
use crate::support::{Env, one};

fn creates(calls: &[Call]) -> Vec<String> {
    calls.iter().filter_map(|c| if let Call::Create(a) = c { Some(a.name().to_owned()) } else { None }).collect()
}

fn deletes(calls: &[Call]) -> Vec<String> {
    calls.iter().filter_map(|c| if let Call::Delete(a) = c { Some(a.name().to_owned()) } else { None }).collect()
}

fn independent(n: usize) -> Project {
    let mut stack = Stack::new("wide");
    for i in 0..n {
        stack.add(Thing::new(&format!("t{i:02}")));
    }
    one(stack)
}

#[tokio::test]
async fn independent_steps_run_concurrently_up_to_the_limit() {
    // 24 independent resources, each create held for 20 ms: the cloud sees exactly `parallelism` calls at
    // once, never more (observed by counting calls in flight, not by timing).
    for parallelism in [1, 4, 10] {
        let env = Env::new();
        env.cloud.set_delay(Duration::from_millis(20));
        let project = independent(24);
        let plan = env.plan(&project).await;
        let reports = env.apply(&project, &plan, parallelism).await;
        assert!(reports[0].is_success());
        assert_eq!(env.cloud.max_in_flight(), parallelism, "parallelism {parallelism}");
        assert_eq!(reports[0].max_in_flight, parallelism);
    }
}

#[tokio::test]
async fn creates_follow_dependencies_and_deletes_run_in_reverse() {
    let env = Env::new();
    let mut stack = Stack::new("chain");
    let a = stack.add(Thing::new("a"));
    let b = stack.add(Thing::new("b").uses(&a));
    stack.add(Thing::new("c").uses(&b));
    let project = one(stack);
    env.up(&project).await;
    assert_eq!(creates(&env.cloud.calls()), ["a", "b", "c"]);
    env.destroy(&project).await;
    assert_eq!(deletes(&env.cloud.calls()), ["c", "b", "a"]);
    assert!(env.cloud.objects().is_empty());
    let state = env.state(&project, "chain").await;
    assert!(state.resources.is_empty() && state.pending.is_empty(), "{state:?}");
}

#[tokio::test]
async fn a_failing_step_stops_new_work_and_the_state_matches_what_was_done() {
    // a and b are independent roots; c depends on b. b fails: a completes, c never starts, and the state
    // holds exactly what the cloud holds.
    let env = Env::new();
    let mut stack = Stack::new("s");
    stack.add(Thing::new("a"));
    let b = stack.add(Thing::new("b"));
    stack.add(Thing::new("c").uses(&b));
    let project = one(stack);
    env.cloud.fail(&"test_thing.b".parse().expect("address"), "InternalError: the cloud is on fire");

    let plan = env.plan(&project).await;
    let report = env.apply(&project, &plan, 1).await.remove(0);
    assert!(!report.is_success());
    assert_eq!(report.failed.len(), 1);
    assert!(report.failed[0].2.contains("the cloud is on fire"));
    assert_eq!(report.not_started.iter().map(|(a, _)| a.name()).collect::<Vec<_>>(), ["c"]);
    let err = report.into_result().expect_err("failed");
    assert!(err.to_string().contains("test_thing.b (Create): test_thing.b: InternalError"), "{err}");

    let state = env.state(&project, "s").await;
    let recorded: Vec<&str> = state.resources.keys().map(|a| a.name()).collect();
    let existing: Vec<String> = env.cloud.objects().keys().map(|a| a.name().to_owned()).collect();
    assert_eq!(recorded, existing);
    assert_eq!(recorded, ["a"]);
    assert!(state.pending.is_empty());
}

#[tokio::test]
async fn a_saved_plan_is_refused_once_the_state_moved_on() {
    let env = Env::new();
    let build = |value: &str| {
        let mut stack = Stack::new("s");
        stack.add(Thing::new("a").value(value));
        one(stack)
    };
    env.up(&build("v1")).await;
    let saved = env.plan(&build("v2")).await;
    // Someone else applies in between.
    env.up(&build("v3")).await;
    let calls = env.cloud.calls().len();
    let options = paranix::apply::ApplyOptions::default();
    let err = paranix::ops::apply(&build("v2"), &env.ws, &saved, &options).await.expect_err("stale");
    assert_eq!(err.kind(), ErrorKind::StalePlan);
    assert!(err.to_string().contains("it was made against lineage"), "{err}");
    assert_eq!(env.cloud.calls().len(), calls, "refused before the first call");
}

#[tokio::test]
async fn a_saved_plan_is_refused_when_the_configuration_changed() {
    let env = Env::new();
    let build = |value: &str| {
        let mut stack = Stack::new("s");
        stack.add(Thing::new("a").value(value));
        one(stack)
    };
    let saved = env.plan(&build("v1")).await;
    let err = paranix::ops::apply(&build("v2"), &env.ws, &saved, &Default::default()).await.expect_err("stale");
    assert_eq!(err.kind(), ErrorKind::StalePlan);
    assert!(err.to_string().contains("the configuration changed"), "{err}");
    assert!(env.cloud.calls().is_empty());
}

#[tokio::test]
async fn a_saved_plan_survives_a_round_trip_through_its_file() {
    let env = Env::new();
    let mut stack = Stack::new("s");
    stack.add(Thing::new("a").secret("do-not-write-me"));
    let project = one(stack);
    let plan = env.plan(&project).await;
    let text = plan.to_json();
    assert!(!text.contains("do-not-write-me"));
    let loaded = paranix::plan::ProjectPlan::from_json(&text).expect("parse");
    assert_eq!(loaded, plan);
    for report in env.apply(&project, &loaded, 10).await {
        report.into_result().expect("applies");
    }
    assert!(env.plan(&project).await.is_empty());
}

/// Two things, `a` with `value`, `b` fixed, and an output.
fn pair(value: &str) -> Project {
    let mut stack = Stack::new("s");
    let a = stack.add(Thing::new("a").value(value));
    stack.add(Thing::new("b").value("kept"));
    stack.export(&OutputKey::<String>::new("a_id"), crate::kinds::id(&a));
    one(stack)
}

/// `text` (a plan file) with `edit` applied to its JSON.
fn edited(text: &str, edit: impl FnOnce(&mut serde_json::Value)) -> paranix::plan::ProjectPlan {
    let mut json: serde_json::Value = serde_json::from_str(text).expect("a plan file is JSON");
    edit(&mut json);
    paranix::plan::ProjectPlan::from_json(&json.to_string()).expect("still a plan file")
}

/// The change of `name` in an edited file's first stack.
fn change<'v>(json: &'v mut serde_json::Value, name: &str) -> &'v mut serde_json::Value {
    let changes = json["stacks"][0]["changes"].as_array_mut().expect("changes");
    changes
        .iter_mut()
        .find(|c| c["address"].as_str().is_some_and(|a| a.ends_with(&format!(".{name}"))))
        .expect("change")
}

#[tokio::test]
async fn an_edited_plan_file_is_refused_before_any_mutation_whatever_was_edited() {
    let env = Env::new();
    env.up(&pair("v1")).await;
    let project = pair("v2");
    let text = env.plan(&project).await.to_json();
    let before = env.cloud.objects();
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "update -> delete",
            Box::new(|j| change(j, "a")["action"] = "delete".into()),
            "test_thing.a: the file says delete, planning now gives update",
        ),
        (
            "no_op -> delete",
            Box::new(|j| change(j, "b")["action"] = "delete".into()),
            "test_thing.b: the file says delete, planning now gives no_op",
        ),
        (
            "an after value",
            Box::new(|j| change(j, "a")["after"]["value"] = "evil".into()),
            "test_thing.a: its values after apply differs",
        ),
        (
            "a diff",
            Box::new(|j| change(j, "a")["diffs"][0]["after"] = "evil".into()),
            "test_thing.a: the change of `value` differs",
        ),
        (
            "the destroy flag",
            Box::new(|j| j["stacks"][0]["destroy"] = true.into()),
            "test_thing.a: the file says update, planning now gives delete",
        ),
        (
            "a removed change",
            Box::new(|j| {
                j["stacks"][0]["changes"].as_array_mut().expect("changes").retain(|c| c["address"] != "test_thing.a")
            }),
            "test_thing.a: planning now gives update, the file does not have it",
        ),
        (
            "an added change",
            Box::new(|j| {
                let mut extra = change(j, "b").clone();
                extra["address"] = "test_thing.c".into();
                extra["action"] = "delete".into();
                j["stacks"][0]["changes"].as_array_mut().expect("changes").push(extra);
            }),
            "test_thing.c: the file plans delete, planning now does not involve it",
        ),
        (
            "the targets",
            Box::new(|j| j["stacks"][0]["targets"] = serde_json::json!(["test_thing.b"])),
            "test_thing.a: the file plans update, planning now does not involve it",
        ),
        ("an output", Box::new(|j| j["stacks"][0]["outputs"][0]["action"] = "delete".into()), "output `a_id` differs"),
        (
            "the state version",
            Box::new(|j| j["stacks"][0]["state"]["serial"] = 99.into()),
            "the file was made against lineage",
        ),
    ];
    for (what, edit, expected) in &cases {
        let calls = env.cloud.calls().len();
        let file = edited(&text, edit);
        let err = paranix::ops::apply(&project, &env.ws, &file, &Default::default()).await.expect_err(what);
        assert_eq!(err.kind(), ErrorKind::StalePlan, "{what}: {err}");
        let message = err.to_string();
        assert!(message.contains("the plan file does not match planning now"), "{what}: {message}");
        assert!(message.contains(expected), "{what}: expected {expected:?} in {message}");
        assert!(
            env.cloud.calls()[calls..].iter().all(|c| matches!(c, paranix::testing::Call::Read(..))),
            "{what}: only reads reached the cloud: {:?}",
            &env.cloud.calls()[calls..]
        );
        assert_eq!(env.cloud.objects(), before, "{what}: nothing changed");
    }

    // The file as saved applies, and does what it showed.
    let file = paranix::plan::ProjectPlan::from_json(&text).expect("parse");
    assert!(!file.is_as_planned(), "a file is never taken as planned here");
    for report in paranix::ops::apply(&project, &env.ws, &file, &Default::default()).await.expect("applies") {
        report.into_result().expect("applied");
    }
    assert!(env.plan(&project).await.is_empty());
}

#[tokio::test]
async fn a_plan_changed_in_memory_is_planned_again_too() {
    let env = Env::new();
    env.up(&pair("v1")).await;
    let project = pair("v2");
    let mut plan = env.plan(&project).await;
    assert!(plan.is_as_planned());
    let b = plan.stacks[0].changes.iter_mut().find(|c| c.address.name() == "b").expect("b");
    b.action = Action::Delete;
    assert!(!plan.is_as_planned());
    let err = paranix::ops::apply(&project, &env.ws, &plan, &Default::default()).await.expect_err("edited");
    assert!(err.to_string().contains("test_thing.b: the file says delete, planning now gives no_op"), "{err}");
    assert_eq!(env.cloud.objects().len(), 2, "nothing deleted");
}

#[tokio::test]
async fn with_a_plan_key_only_files_signed_with_it_are_applied() {
    let env = Env::new();
    let key = paranix::plan::PlanKey::new(*b"0123456789abcdef0123456789abcdef").expect("key");
    let other = paranix::plan::PlanKey::new(*b"fedcba9876543210fedcba9876543210").expect("key");
    assert!(paranix::plan::PlanKey::new(*b"short").is_err());
    assert_eq!(format!("{key:?}"), "PlanKey(<redacted>)");
    let ws = env.ws.clone().with_plan_key(key.clone());
    let project = pair("v1");
    let planned = env.plan(&project).await;
    let apply = |file: paranix::plan::ProjectPlan| {
        let ws = ws.clone();
        let project = project.clone();
        async move { paranix::ops::apply(&project, &ws, &file, &Default::default()).await }
    };
    let load =
        |plan: &paranix::plan::ProjectPlan| paranix::plan::ProjectPlan::from_json(&plan.to_json()).expect("parse");

    let err = apply(load(&planned)).await.expect_err("unsigned");
    assert!(err.to_string().contains("it is not signed"), "{err}");
    let mut foreign = planned.clone();
    foreign.sign(&other);
    let err = apply(load(&foreign)).await.expect_err("another key");
    assert!(err.to_string().contains("its signature does not match"), "{err}");
    let mut signed = planned.clone();
    signed.sign(&key);
    let tampered = edited(&signed.to_json(), |j| change(j, "a")["after"]["value"] = "evil".into());
    let err = apply(tampered).await.expect_err("changed after signing");
    assert!(err.to_string().contains("its signature does not match"), "{err}");
    assert!(env.cloud.calls().is_empty(), "refused before any call: {:?}", env.cloud.calls());

    for report in apply(load(&signed)).await.expect("signed with the key") {
        report.into_result().expect("applied");
    }
    assert_eq!(env.cloud.objects().len(), 2);
}

#[tokio::test]
async fn replacement_deletes_first_unless_create_before_destroy() {
    for cbd in [false, true] {
        let env = Env::new();
        let build = |size: i64| {
            let mut stack = Stack::new("s");
            let thing = Thing::new("a").size(size);
            let thing = if cbd { thing.create_before_destroy() } else { thing };
            let a = stack.add(thing);
            stack.add(Thing::new("user").uses(&a));
            one(stack)
        };
        env.up(&build(1)).await;
        let before = env.cloud.calls().len();
        let plan = env.plan(&build(2)).await;
        assert!(plan.to_string().contains(if cbd { "+/- resource" } else { "-/+ resource" }), "{plan}");
        env.apply(&build(2), &plan, 10).await.remove(0).into_result().expect("applies");
        let calls: Vec<String> = env.cloud.calls()[before..]
            .iter()
            .filter_map(|c| match c {
                Call::Create(a) => Some(format!("create {}", a.name())),
                Call::Update(a) => Some(format!("update {}", a.name())),
                Call::Delete(a) => Some(format!("delete {}", a.name())),
                Call::Read(..) => None,
            })
            .collect();
        let expected: &[&str] =
            if cbd { &["create a", "update user", "delete a"] } else { &["delete a", "create a", "update user"] };
        assert_eq!(calls, expected, "create_before_destroy = {cbd}");
        let after = env.plan(&build(2)).await;
        assert!(after.is_empty(), "cbd={cbd}: {after}");
        let state = env.state(&build(2), "s").await;
        assert!(state.deposed.is_empty());
        // The new object is generation 2: a fresh idempotency token, never the deleted one's.
        assert_eq!(state.resources[&"test_thing.a".parse().expect("address")].generation, 2);
    }
}

#[tokio::test]
async fn state_is_persisted_after_every_step_with_an_intent_before_each_call() {
    let env = Env::new();
    let serials = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = serials.clone();
    let observer = std::sync::Arc::new(move |e: &paranix::events::Event| {
        if let paranix::events::Event::StatePersisted { serial, .. } = e {
            seen.lock().expect("mutex").push(*serial);
        }
    });
    let project = independent(3);
    let plan = env.plan(&project).await;
    let options = paranix::apply::ApplyOptions { observer, parallelism: 1, ..Default::default() };
    paranix::ops::apply(&project, &env.ws, &plan, &options).await.expect("apply").remove(0).into_result().expect("ok");
    // Three creates, each journaled (intent) and recorded (outcome), then the outputs write is skipped
    // because there are none: six writes with consecutive serials.
    assert_eq!(*serials.lock().expect("mutex"), [1, 2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn a_destroy_of_a_stack_with_nothing_in_state_changes_nothing() {
    let env = Env::new();
    let project = independent(2);
    let plan = env.plan_with(&project, &PlanRequest { destroy: true, ..Default::default() }).await;
    assert!(plan.is_empty(), "{plan}");
}

#[tokio::test]
async fn two_concurrent_runs_on_a_local_stack_never_interleave() {
    // As with S3 state (see `workflow`), 20 rounds: the runs race for the local lock file while the winner's
    // 100 ms change holds it; exactly one proceeds, the other is told who holds the lock.
    let env = Env::new();
    env.cloud.set_delay(Duration::from_millis(100));
    let build = |value: &str| {
        let mut stack = Stack::new("local");
        stack.add(Thing::new("a").value(value));
        one(stack)
    };
    let mut lineage = None;
    for round in 0..20 {
        let (a, b) = (build(&format!("a{round}")), build(&format!("b{round}")));
        let (plan_a, plan_b) = (env.plan(&a).await, env.plan(&b).await);
        let options = paranix::apply::ApplyOptions::default();
        let (ra, rb) = tokio::join!(
            paranix::ops::apply(&a, &env.ws, &plan_a, &options),
            paranix::ops::apply(&b, &env.ws, &plan_b, &options)
        );
        let (winner, loser) = match (ra, rb) {
            (Ok(_), Err(e)) => ("a", e),
            (Err(e), Ok(_)) => ("b", e),
            (ra, rb) => panic!("round {round}: exactly one run must proceed: {:?} / {:?}", ra.err(), rb.err()),
        };
        assert_eq!(loser.kind(), ErrorKind::LockHeld, "round {round}: {loser}");
        assert!(loser.to_string().contains("for `apply`"), "{loser}");
        let state = env.state(&a, "local").await;
        let value = &state.resources[&"test_thing.a".parse().expect("address")].inputs["value"];
        assert_eq!(value.as_str(), Some(format!("{winner}{round}").as_str()));
        assert!(lineage.get_or_insert(state.lineage.clone()) == &state.lineage);
        assert!(state.pending.is_empty());
    }
}
