//! Sharing batched checks out between connections.
//!
//! Each item (a check) needs a set of building blocks and has its own cost; a batch
//! costs the blocks its items need, each counted once (a batch computes a block
//! once), plus its items' own costs, plus a fixed cost for opening the connection.
//! The aim is the cheapest costliest batch, since the batches run side by side.

use std::collections::{BTreeMap, BTreeSet};

/// One item to place: the blocks it needs (with their costs looked up through
/// [`Costs::block`]) and the cost of its own work.
pub struct Item {
    pub blocks: BTreeSet<String>,
    pub own: u32,
}

pub struct Costs<'a> {
    /// The cost of one building block.
    pub block: &'a dyn Fn(&str) -> u32,
    /// The cost of opening a batch (a connection).
    pub new_batch: u32,
}

/// The batch (0..n) of each item. Start: items whose costliest block is the same are
/// grouped, and each group, costliest first, goes to the batch it leaves the least
/// costly. Then, while it lowers the costliest batch (or the total, at the same
/// maximum), one item, or all the items of one batch that need one block, move to
/// another batch.
pub fn assign(items: &[Item], n: usize, costs: &Costs) -> Vec<usize> {
    let n = n.max(1).min(items.len().max(1));
    let mut at = greedy(items, n, costs);
    let all_blocks: BTreeSet<&String> = items.iter().flat_map(|i| &i.blocks).collect();
    let mut current = score(items, &at, n, costs);
    for _ in 0..4 * items.len() {
        let mut moves: Vec<Vec<usize>> = (0..items.len()).map(|k| vec![k]).collect();
        for b in 0..n {
            for block in &all_blocks {
                let group: Vec<usize> = (0..items.len())
                    .filter(|&k| at[k] == b && items[k].blocks.contains(*block))
                    .collect();
                if group.len() > 1 {
                    moves.push(group);
                }
            }
        }
        let mut best: Option<((u32, u32), Vec<usize>, usize)> = None;
        for m in moves {
            let from = at[m[0]];
            for to in (0..n).filter(|&to| to != from) {
                let mut trial = at.clone();
                for &k in &m {
                    trial[k] = to;
                }
                let s = score(items, &trial, n, costs);
                if s < best.as_ref().map_or(current, |b| b.0) {
                    best = Some((s, m.clone(), to));
                }
            }
        }
        let Some((s, m, to)) = best else { break };
        for k in m {
            at[k] = to;
        }
        current = s;
    }
    at
}

fn greedy(items: &[Item], n: usize, costs: &Costs) -> Vec<usize> {
    let mut groups: BTreeMap<(u32, String), Vec<usize>> = BTreeMap::new();
    for (k, item) in items.iter().enumerate() {
        let key = item
            .blocks
            .iter()
            .map(|b| ((costs.block)(b), b.clone()))
            .max()
            .unwrap_or_default();
        groups.entry(key).or_default().push(k);
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(batch_cost(items, g.iter().copied(), costs)));
    let mut at = vec![0; items.len()];
    let mut placed: Vec<Vec<usize>> = vec![vec![]; n];
    for g in groups {
        let best = (0..n)
            .min_by_key(|&b| batch_cost(items, placed[b].iter().chain(&g).copied(), costs))
            .unwrap_or(0);
        for &k in &g {
            at[k] = best;
        }
        placed[best].extend(g);
    }
    at
}

/// The costliest batch and the total, for an assignment.
fn score(items: &[Item], at: &[usize], n: usize, costs: &Costs) -> (u32, u32) {
    let each: Vec<u32> = (0..n)
        .map(|b| batch_cost(items, (0..at.len()).filter(|&k| at[k] == b), costs))
        .collect();
    (each.iter().copied().max().unwrap_or(0), each.iter().sum())
}

fn batch_cost(items: &[Item], members: impl Iterator<Item = usize>, costs: &Costs) -> u32 {
    let mut blocks = BTreeSet::new();
    let mut own = 0;
    let mut any = false;
    for k in members {
        any = true;
        own += items[k].own;
        blocks.extend(items[k].blocks.iter());
    }
    if !any {
        return 0;
    }
    own + costs.new_batch + blocks.into_iter().map(|b| (costs.block)(b)).sum::<u32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(blocks: &[&str], own: u32) -> Item {
        Item {
            blocks: blocks.iter().map(|b| b.to_string()).collect(),
            own,
        }
    }

    fn costs(f: &dyn Fn(&str) -> u32) -> Costs<'_> {
        Costs {
            block: f,
            new_batch: 3,
        }
    }

    #[test]
    fn a_shared_costly_block_is_not_computed_twice_when_that_would_cost_more() {
        // two items on one block of 20 and a cheap third: the block stays in one batch
        let block = |b: &str| if b == "big" { 20 } else { 1 };
        let items = [item(&["big"], 1), item(&["big"], 1), item(&["small"], 1)];
        let at = assign(&items, 2, &costs(&block));
        assert_eq!(at[0], at[1]);
        assert_ne!(at[0], at[2]);
    }

    #[test]
    fn the_local_search_moves_an_item_the_grouping_put_in_the_wrong_batch() {
        // grouped by their block, x and y would share a batch of 1 + 20 + 3 = 24;
        // apart, each batch costs 14
        let block = |_: &str| 1;
        let items = [item(&["base"], 10), item(&["base"], 10)];
        let at = assign(&items, 2, &costs(&block));
        assert_ne!(at[0], at[1]);
    }

    #[test]
    fn one_connection_takes_everything_and_no_item_is_lost() {
        let block = |_: &str| 1;
        let items = [item(&["a"], 1), item(&["b"], 1), item(&[], 1)];
        assert_eq!(assign(&items, 1, &costs(&block)), vec![0, 0, 0]);
        let at = assign(&items, 8, &costs(&block));
        assert_eq!(at.len(), 3);
        assert!(at.iter().all(|&b| b < 3));
    }
}
