//! The planner, one story per action, reason and lifecycle option.

use paranix::attr::Attr;
use paranix::plan::{Action, Reason};
use paranix::prelude::*;
use paranix::testing::{plan_against, plan_offline};

use crate::kinds::{Thing, id};
use crate::support::{Env, one};

fn reasons(plan: &Plan, name: &str) -> (Action, Vec<Reason>) {
    let change = plan.changes().iter().find(|c| c.address.name() == name).expect("change present");
    (change.action, change.reasons.clone())
}

#[test]
fn a_new_resource_is_created_with_its_outputs_known_after_apply() {
    let mut stack = Stack::new("s");
    stack.add(Thing::new("a"));
    let plan = plan_offline(&stack).expect("plan");
    assert_eq!(reasons(&plan, "a"), (Action::Create, vec![Reason::NotInState]));
    let after = plan.changes()[0].after.as_ref().expect("after");
    assert_eq!(after["id"], Attr::Unknown);
    assert!(plan.to_string().contains("+ id    = (known after apply)"), "{plan}");
}

#[tokio::test]
async fn an_applied_stack_plans_as_no_op_and_changes_are_updates_or_replacements() {
    let env = Env::new();
    let build = |value: &str, size: i64| {
        let mut stack = Stack::new("s");
        stack.add(Thing::new("a").value(value).size(size));
        one(stack)
    };
    env.up(&build("v1", 1)).await;
    let same = env.plan(&build("v1", 1)).await;
    assert!(same.is_empty(), "{same}");
    assert_eq!(reasons(&same.stacks[0], "a").0, Action::NoOp);

    // `value` changes in place.
    let update = env.plan(&build("v2", 1)).await;
    let expected = Reason::FieldsChanged { fields: vec!["value".into()] };
    assert_eq!(reasons(&update.stacks[0], "a"), (Action::Update, vec![expected]));
    assert!(update.to_string().contains("~ value = \"v1\" -> \"v2\""), "{update}");

    // `size` cannot change in place: the resource is replaced, and the plan says why.
    let replace = env.plan(&build("v1", 2)).await;
    let expected = Reason::ForcesReplacement { fields: vec!["size".into()] };
    assert_eq!(reasons(&replace.stacks[0], "a"), (Action::Replace, vec![expected]));
    let text = replace.to_string();
    assert!(text.contains("test_thing.a must be replaced: `size` forces replacement"), "{text}");
    assert!(text.contains("~ size = 1 -> 2 # forces replacement"), "{text}");
    assert!(text.contains("Plan: 1 to add, 0 to change, 1 to destroy."), "{text}");
}

#[tokio::test]
async fn a_resource_removed_from_the_program_is_deleted_and_destroy_deletes_everything() {
    let env = Env::new();
    let mut both = Stack::new("s");
    let a = both.add(Thing::new("a"));
    both.add(Thing::new("b").uses(&a));
    env.up(&one(both.clone())).await;

    let mut only_a = Stack::new("s");
    only_a.add(Thing::new("a"));
    let plan = env.plan(&one(only_a)).await;
    assert_eq!(reasons(&plan.stacks[0], "b"), (Action::Delete, vec![Reason::NotInConfiguration]));
    assert_eq!(reasons(&plan.stacks[0], "a").0, Action::NoOp);
    assert!(plan.to_string().contains("test_thing.b will be destroyed: not in configuration"));

    let destroy = env.plan_with(&one(both), &paranix::ops::PlanRequest { destroy: true, ..Default::default() }).await;
    for name in ["a", "b"] {
        assert_eq!(reasons(&destroy.stacks[0], name), (Action::Delete, vec![Reason::DestroyRequested]));
    }
}

#[tokio::test]
async fn a_resource_deleted_out_of_band_is_reported_as_drift_and_created_again() {
    let env = Env::new();
    let mut stack = Stack::new("s");
    stack.add(Thing::new("a"));
    let project = one(stack);
    env.up(&project).await;
    env.cloud.remove(&"test_thing.a".parse().expect("address"));

    let plan = env.plan(&project).await;
    let p = &plan.stacks[0];
    assert_eq!(reasons(p, "a"), (Action::Create, vec![Reason::GoneOutOfBand]));
    assert!(p.drift.len() == 1 && p.drift[0].deleted);
    let text = plan.to_string();
    assert!(text.contains("# test_thing.a has been deleted"), "{text}");
    assert!(text.contains("test_thing.a will be created again: it was deleted outside paranix"), "{text}");
}

#[tokio::test]
async fn drift_is_reported_apart_from_the_change_that_undoes_it() {
    let env = Env::new();
    let mut stack = Stack::new("s");
    stack.add(Thing::new("a").value("mine"));
    let project = one(stack);
    env.up(&project).await;
    env.cloud.drift(&"test_thing.a".parse().expect("address"), "value", Attr::str("theirs"));

    let plan = env.plan(&project).await;
    let p = &plan.stacks[0];
    assert_eq!(p.drift.len(), 1);
    assert_eq!(p.drift[0].diffs[0].after, Some(Attr::str("theirs")));
    assert_eq!(reasons(p, "a").0, Action::Update);
    let text = plan.to_string();
    let drift_at = text.find("changed outside of paranix").expect("drift section");
    let actions_at = text.find("will perform the following actions").expect("actions");
    assert!(drift_at < actions_at, "{text}");
    assert!(text.contains("~ value = \"theirs\" -> \"mine\""), "{text}");
}

#[tokio::test]
async fn ignored_fields_keep_what_the_cloud_has() {
    let env = Env::new();
    let build = |value: &str| {
        let mut stack = Stack::new("s");
        stack.add(Thing::new("a").value(value).ignore_changes(["value"]));
        one(stack)
    };
    env.up(&build("first")).await;
    env.cloud.drift(&"test_thing.a".parse().expect("address"), "value", Attr::str("edited-by-hand"));
    let plan = env.plan(&build("second")).await;
    assert_eq!(reasons(&plan.stacks[0], "a").0, Action::NoOp, "{plan}");
}

#[test]
fn ignoring_a_field_the_kind_does_not_have_is_an_error() {
    let mut stack = Stack::new("s");
    stack.add(Thing::new("a").ignore_changes(["valeu"]));
    let err = plan_offline(&stack).expect_err("unknown field");
    assert!(
        err.to_string().contains("`valeu` is not a field of test_thing; fields: refs, secret, size, tags, value"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unknown_id_flowing_into_a_replacing_field_replaces_the_dependent_too() {
    // b lists a's id in `refs` (updatable); c takes a's id as its `value`, and a is replaced: its id is
    // unknown until apply, so both dependents change, and the plan shows `(known after apply)`.
    let env = Env::new();
    let build = |size: i64| {
        let mut stack = Stack::new("s");
        let a = stack.add(Thing::new("a").size(size));
        stack.add(Thing::new("b").uses(&a));
        stack.add(Thing::new("c").value(id(&a)));
        one(stack)
    };
    env.up(&build(1)).await;
    let plan = env.plan(&build(2)).await;
    let p = &plan.stacks[0];
    assert_eq!(reasons(p, "a").0, Action::Replace);
    assert_eq!(reasons(p, "b").0, Action::Update);
    assert_eq!(reasons(p, "c").0, Action::Update);
    assert!(plan.to_string().contains("-> (known after apply)"), "{plan}");
}

#[test]
fn a_cycle_is_rejected_naming_every_address_on_it() {
    use paranix::resource::ResourceExt;
    let mut stack = Stack::new("s");
    // a -> c -> b -> a: a handle to `c` is needed before `c` is declared, so it comes from a scratch stack
    // (a handle is just an address).
    let mut scratch = Stack::new("scratch");
    let c_handle = scratch.add(Thing::new("c"));
    let a = stack.add(Thing::new("a").depends_on(&c_handle));
    let b = stack.add(Thing::new("b").uses(&a));
    stack.add(Thing::new("c").uses(&b));
    let err = plan_offline(&stack).expect_err("cycle");
    assert_eq!(err.kind(), ErrorKind::Cycle);
    assert_eq!(
        err.to_string(),
        "dependency cycle (each depends on the next): test_thing.a -> test_thing.c -> test_thing.b -> test_thing.a"
    );
}

#[test]
fn bad_fields_and_duplicate_addresses_are_all_reported_at_once() {
    let mut stack = Stack::new("s");
    stack.add(Thing::new("a").size(-1));
    stack.add(Thing::new("a"));
    stack.add(ec2::SecurityGroup::new("web").ingress(ec2::Rule::tcp(70000).cidr("10.0.0.1/8")));
    let err = plan_offline(&stack).expect_err("invalid");
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    for needle in [
        "test_thing.a: field `size`: -1 is negative",
        "test_thing.a: field `name`: the address test_thing.a is declared twice",
        "aws_security_group.web: field `ingress[0].from_port`: port 70000 is outside 0..=65535",
        "aws_security_group.web: field `ingress[0].cidr_blocks`: \"10.0.0.1/8\" has host bits set; did you mean 10.0.0.0/8?",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn a_reference_to_a_resource_of_another_stack_is_an_error() {
    let mut other = Stack::new("other");
    let a = other.add(Thing::new("a"));
    let mut stack = Stack::new("s");
    stack.add(Thing::new("b").uses(&a));
    let err = plan_offline(&stack).expect_err("undeclared");
    assert!(
        err.to_string()
            .contains("test_thing.b: field `refs`: refers to test_thing.a, which is not declared in stack \"s\""),
        "{err}"
    );
}

#[test]
fn sensitive_values_never_appear_in_plan_text_or_json() {
    const MARKER: &str = "hunter2-POISON-7f3a";
    let mut stack = Stack::new("s");
    stack.add(Thing::new("a").secret(MARKER));
    let plan = plan_offline(&stack).expect("plan");
    let text = plan.to_string();
    let json = plan.to_json();
    assert!(!text.contains(MARKER) && !json.contains(MARKER));
    assert!(text.contains("+ secret = (sensitive value)"), "{text}");
    assert!(json.contains("\"$sensitive\": true"), "{json}");

    // A changed secret is shown as changed, still without its value, before or after.
    let state = {
        let mut s = paranix::state::State::new("s");
        s.resources.insert(
            "test_thing.a".parse().expect("address"),
            paranix::state::ResourceState {
                inputs: plan.changes()[0]
                    .after
                    .clone()
                    .expect("after")
                    .into_iter()
                    .filter(|(k, _)| k != "id" && k != "arn")
                    .map(|(k, v)| if k == "secret" { (k, Attr::str("old-secret-OLDMARK")) } else { (k, v) })
                    .collect(),
                outputs: [("id".to_owned(), Attr::str("t-1"))].into(),
                dependencies: vec![],
                generation: 1,
            },
        );
        s
    };
    let plan = plan_against(&stack, &state).expect("plan");
    let (text, json) = (plan.to_string(), plan.to_json());
    assert_eq!(plan.changes()[0].action, Action::Update);
    for leaked in [MARKER, "OLDMARK"] {
        assert!(!text.contains(leaked) && !json.contains(leaked), "{leaked} leaked:\n{text}\n{json}");
    }
    assert!(text.contains("~ secret = (sensitive value)"), "{text}");
}

#[tokio::test]
async fn a_protected_resource_cannot_be_replaced_or_destroyed() {
    let env = Env::new();
    let build = |size: i64| {
        let mut stack = Stack::new("s");
        stack.add(Thing::new("keep").size(size).protect());
        one(stack)
    };
    env.up(&build(1)).await;
    let err = paranix::ops::plan(&build(2), &env.ws, &Default::default(), &paranix::events::Silent)
        .await
        .expect_err("protected");
    assert_eq!(err.kind(), ErrorKind::Protected);
    assert!(err.to_string().contains("test_thing.keep would be replaced (`size` forces replacement)"), "{err}");
}

#[tokio::test]
async fn a_target_limits_the_plan_to_it_and_what_it_depends_on() {
    let env = Env::new();
    let mut stack = Stack::new("s");
    let a = stack.add(Thing::new("a"));
    stack.add(Thing::new("b").uses(&a));
    stack.add(Thing::new("unrelated"));
    let request =
        paranix::ops::PlanRequest { targets: vec!["test_thing.b".parse().expect("address")], ..Default::default() };
    let plan = env.plan_with(&one(stack), &request).await;
    let names: Vec<&str> = plan.stacks[0].changes().iter().map(|c| c.address.name()).collect();
    assert_eq!(names, ["a", "b"]);
}

#[tokio::test]
async fn data_sources_whose_values_depend_on_this_run_are_read_during_apply() {
    const ID: OutputKey<String> = OutputKey::new("thing_id");
    let env = Env::new();
    let mut upstream = Stack::new("up");
    let a = upstream.add(Thing::new("a"));
    upstream.export(&ID, id(&a));
    let mut downstream = Stack::new("down");
    let remote = downstream.add(RemoteState::of(&upstream));
    downstream.add(Thing::new("b").value(remote.output(&ID)));
    let project = Project::new().stack(upstream).stack(downstream);

    let plan = env.plan(&project).await;
    let down = plan.stack("down").expect("down");
    assert_eq!(reasons(down, "up").0, Action::Read, "{plan}");
    env.up(&project).await;
    let again = env.plan(&project).await;
    assert!(again.is_empty(), "{again}");
    let b = env.state(&project, "down").await;
    let a_id = env.state(&project, "up").await.outputs["thing_id"].value.clone();
    assert_eq!(b.resources[&"test_thing.b".parse().expect("address")].inputs["value"], a_id);
}
