//! [`Graph`]: a stack's resources as a DAG, with a deterministic topological order and cycle errors that name
//! every address on the cycle.

use std::collections::{BTreeMap, BTreeSet};

use crate::address::Address;
use crate::error::{Error, ErrorKind, Result};
use crate::stack::Stack;

/// The dependency graph of a stack (edges point from a resource to what it depends on).
#[derive(Clone, Debug)]
pub struct Graph {
    order: Vec<Address>,
    deps: BTreeMap<Address, Vec<Address>>,
}

impl Graph {
    /// Builds the graph of `stack`, or fails with [`ErrorKind::Cycle`].
    pub fn of(stack: &Stack) -> Result<Graph> {
        let deps: BTreeMap<Address, Vec<Address>> =
            stack.nodes().iter().map(|n| (n.address.clone(), n.depends_on.clone())).collect();
        let order = topological_order(&deps)?;
        Ok(Graph { order, deps })
    }

    /// Every address, dependencies before dependents; ties broken by address, so the order is deterministic.
    pub fn order(&self) -> &[Address] {
        &self.order
    }

    /// The direct dependencies of `address`.
    pub fn dependencies(&self, address: &Address) -> &[Address] {
        self.deps.get(address).map(Vec::as_slice).unwrap_or(&[])
    }

    /// `addresses` plus everything they depend on, transitively.
    pub fn with_dependencies(&self, addresses: &[Address]) -> BTreeSet<Address> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<Address> = addresses.to_vec();
        while let Some(a) = todo.pop() {
            if seen.insert(a.clone()) {
                todo.extend(self.dependencies(&a).iter().cloned());
            }
        }
        seen
    }
}

/// Kahn's algorithm over a dependency map (node -> what it depends on), smallest ready address first.
/// Dependencies missing from the map are ignored (they are checked elsewhere).
pub(crate) fn topological_order<K: Ord + Clone + std::fmt::Display>(deps: &BTreeMap<K, Vec<K>>) -> Result<Vec<K>> {
    let mut waiting: BTreeMap<&K, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&K, Vec<&K>> = BTreeMap::new();
    for (node, ds) in deps {
        let ds: BTreeSet<&K> = ds.iter().filter(|d| deps.contains_key(*d) && *d != node).collect();
        waiting.insert(node, ds.len());
        for d in ds {
            dependents.entry(d).or_default().push(node);
        }
    }
    let mut ready: BTreeSet<&K> = waiting.iter().filter(|(_, n)| **n == 0).map(|(k, _)| *k).collect();
    let mut order = Vec::with_capacity(deps.len());
    while let Some(next) = ready.pop_first() {
        order.push(next.clone());
        for dependent in dependents.get(next).into_iter().flatten() {
            let count = waiting.get_mut(dependent).expect("every dependent is a node");
            *count -= 1;
            if *count == 0 {
                ready.insert(dependent);
            }
        }
    }
    if order.len() == deps.len() {
        return Ok(order);
    }
    let stuck: BTreeSet<&K> = waiting.iter().filter(|(_, n)| **n > 0).map(|(k, _)| *k).collect();
    let cycle = find_cycle(deps, &stuck);
    let names: Vec<String> = cycle.iter().map(ToString::to_string).collect();
    Err(Error::new(
        ErrorKind::Cycle,
        format!(
            "dependency cycle (each depends on the next): {} -> {}",
            names.join(" -> "),
            names.first().map_or("", String::as_str)
        ),
    ))
}

/// One cycle among the stuck nodes (every stuck node has a stuck dependency, so walking always closes a loop).
fn find_cycle<K: Ord + Clone>(deps: &BTreeMap<K, Vec<K>>, stuck: &BTreeSet<&K>) -> Vec<K> {
    let Some(start) = stuck.first() else { return Vec::new() };
    let mut path: Vec<&K> = vec![start];
    let mut position: BTreeMap<&K, usize> = BTreeMap::from([(*start, 0)]);
    loop {
        let current = *path.last().expect("path is never empty");
        let next =
            deps[current].iter().filter(|d| stuck.contains(d)).min().expect("a stuck node has a stuck dependency");
        if let Some(&at) = position.get(next) {
            let mut cycle: Vec<K> = path[at..].iter().map(|k| (*k).clone()).collect();
            // Start the cycle at its smallest member so the message is deterministic.
            let smallest = (0..cycle.len()).min_by(|&a, &b| cycle[a].cmp(&cycle[b])).unwrap_or(0);
            cycle.rotate_left(smallest);
            return cycle;
        }
        position.insert(next, path.len());
        path.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: &str) -> Address {
        Address::managed("t", name)
    }

    #[test]
    fn order_puts_dependencies_first_and_breaks_ties_by_address() {
        let deps = BTreeMap::from([
            (a("c"), vec![a("a")]),
            (a("b"), vec![]),
            (a("a"), vec![]),
            (a("d"), vec![a("c"), a("b")]),
        ]);
        let order = topological_order(&deps).expect("acyclic");
        let names: Vec<_> = order.iter().map(Address::name).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
    }

    #[test]
    fn a_cycle_error_names_every_address_on_it() {
        // x -> y -> z -> x, and w hangs off the cycle without being on it.
        let deps = BTreeMap::from([
            (a("x"), vec![a("y")]),
            (a("y"), vec![a("z")]),
            (a("z"), vec![a("x")]),
            (a("w"), vec![a("x")]),
        ]);
        let err = topological_order(&deps).expect_err("cyclic");
        assert_eq!(err.kind(), ErrorKind::Cycle);
        assert_eq!(err.to_string(), "dependency cycle (each depends on the next): t.x -> t.y -> t.z -> t.x");
    }
}
