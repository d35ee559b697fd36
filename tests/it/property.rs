//! Property: for random graphs, planning against the state the apply produced yields no changes, and so
//! does re-planning after a random edit has been applied.

use proptest::prelude::*;

use paranix::prelude::*;

use crate::kinds::{Thing, id};
use crate::support::{Env, one};

/// A random DAG: node i may use any earlier node (by id in `refs`, or as its `value`).
#[derive(Clone, Debug)]
struct Spec {
    nodes: Vec<(i64, String, Vec<usize>, Option<usize>)>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (1usize..12).prop_flat_map(|n| {
        let node = |i: usize| {
            (0i64..3, "[a-c]{1,2}", proptest::collection::vec(0..i.max(1), 0..3), proptest::option::of(0..i.max(1)))
                .prop_map(move |(size, value, refs, value_ref)| {
                    let refs = if i == 0 { Vec::new() } else { refs };
                    let value_ref = if i == 0 { None } else { value_ref };
                    (size, value, refs, value_ref)
                })
        };
        (0..n).map(node).collect::<Vec<_>>().prop_map(|nodes| Spec { nodes })
    })
}

fn build(spec: &Spec) -> Project {
    let mut stack = Stack::new("random");
    let mut handles = Vec::new();
    for (i, (size, value, refs, value_ref)) in spec.nodes.iter().enumerate() {
        let mut thing = Thing::new(&format!("n{i}")).size(*size).value(value.as_str());
        for r in refs {
            thing = thing.uses(&handles[*r]);
        }
        if let Some(r) = value_ref {
            thing = thing.value(id(&handles[*r]));
        }
        handles.push(stack.add(thing));
    }
    one(stack)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn applying_a_plan_leaves_nothing_to_plan(first in spec(), edit in spec()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let env = Env::new();
            let project = build(&first);
            env.up(&project).await;
            let again = env.plan(&project).await;
            prop_assert!(again.is_empty(), "after the first apply:\n{}", again);

            // Apply a different random graph over the same addresses: creates, updates, replaces, deletes.
            let edited = build(&edit);
            env.up(&edited).await;
            let again = env.plan(&edited).await;
            prop_assert!(again.is_empty(), "after the edit:\n{}", again);
            prop_assert_eq!(env.cloud.object_count(), edit.nodes.len());
            Ok(())
        })?;
    }
}
