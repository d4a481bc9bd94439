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
    let sets = Sets::new(items, costs);
    let mut at = greedy(items, &sets, n, costs);
    let mut each: Vec<u32> = (0..n)
        .map(|b| sets.cost((0..at.len()).filter(|&k| at[k] == b), costs))
        .collect();
    for _ in 0..4 * items.len() {
        let mut moves: Vec<Vec<usize>> = (0..items.len()).map(|k| vec![k]).collect();
        for b in 0..n {
            for block in 0..sets.block_cost.len() {
                let group: Vec<usize> = (0..items.len())
                    .filter(|&k| at[k] == b && sets.has(k, block))
                    .collect();
                if group.len() > 1 {
                    moves.push(group);
                }
            }
        }
        // only the two batches a move touches change cost
        let current = score(&each);
        let mut best: Option<Move> = None;
        for m in moves {
            let from = at[m[0]];
            let left = sets.cost(
                (0..at.len()).filter(|&k| at[k] == from && !m.contains(&k)),
                costs,
            );
            for to in (0..n).filter(|&to| to != from) {
                let joined = sets.cost(
                    (0..at.len()).filter(|&k| at[k] == to || m.contains(&k)),
                    costs,
                );
                let mut trial = each.clone();
                trial[from] = left;
                trial[to] = joined;
                let score = score(&trial);
                if score < best.as_ref().map_or(current, |b| b.score) {
                    best = Some(Move {
                        score,
                        to,
                        left,
                        joined,
                        items: m.clone(),
                    });
                }
            }
        }
        let Some(m) = best else {
            break;
        };
        each[at[m.items[0]]] = m.left;
        each[m.to] = m.joined;
        for k in m.items {
            at[k] = m.to;
        }
    }
    at
}

/// The best move found: which items go to which batch, and the two batches' costs
/// after it.
struct Move {
    score: (u32, u32),
    to: usize,
    left: u32,
    joined: u32,
    items: Vec<usize>,
}

/// The items' blocks as bit sets over numbered blocks, so that a batch's blocks are
/// a union of words rather than of strings.
struct Sets {
    block_cost: Vec<u32>,
    words: usize,
    bits: Vec<Vec<u64>>,
    own: Vec<u32>,
}

impl Sets {
    fn new(items: &[Item], costs: &Costs) -> Sets {
        let names: Vec<&String> = items
            .iter()
            .flat_map(|i| &i.blocks)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let words = names.len().div_ceil(64).max(1);
        let bits = items
            .iter()
            .map(|i| {
                let mut w = vec![0u64; words];
                for b in &i.blocks {
                    let k = names.binary_search(&b).unwrap_or(0);
                    w[k / 64] |= 1 << (k % 64);
                }
                w
            })
            .collect();
        Sets {
            block_cost: names.iter().map(|b| (costs.block)(b)).collect(),
            words,
            bits,
            own: items.iter().map(|i| i.own).collect(),
        }
    }

    fn has(&self, item: usize, block: usize) -> bool {
        self.bits[item][block / 64] & (1 << (block % 64)) != 0
    }

    /// What a batch of these items costs: each block once, each item's own work,
    /// and the connection; nothing for no items.
    fn cost(&self, members: impl Iterator<Item = usize>, costs: &Costs) -> u32 {
        let mut union = vec![0u64; self.words];
        let mut own = 0;
        let mut any = false;
        for k in members {
            any = true;
            own += self.own[k];
            for (u, w) in union.iter_mut().zip(&self.bits[k]) {
                *u |= w;
            }
        }
        if !any {
            return 0;
        }
        let blocks: u32 = (0..self.block_cost.len())
            .filter(|&b| union[b / 64] & (1 << (b % 64)) != 0)
            .map(|b| self.block_cost[b])
            .sum();
        own + costs.new_batch + blocks
    }

    /// The costliest block an item needs (ties: the later name).
    fn costliest(&self, item: usize) -> Option<usize> {
        (0..self.block_cost.len())
            .filter(|&b| self.has(item, b))
            .max_by_key(|&b| (self.block_cost[b], b))
    }
}

fn greedy(items: &[Item], sets: &Sets, n: usize, costs: &Costs) -> Vec<usize> {
    let mut groups: BTreeMap<Option<usize>, Vec<usize>> = BTreeMap::new();
    for k in 0..items.len() {
        groups.entry(sets.costliest(k)).or_default().push(k);
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(sets.cost(g.iter().copied(), costs)));
    let mut at = vec![0; items.len()];
    let mut placed: Vec<Vec<usize>> = vec![vec![]; n];
    for g in groups {
        let best = (0..n)
            .min_by_key(|&b| sets.cost(placed[b].iter().chain(&g).copied(), costs))
            .unwrap_or(0);
        for &k in &g {
            at[k] = best;
        }
        placed[best].extend(g);
    }
    at
}

/// The costliest batch and the total.
fn score(each: &[u32]) -> (u32, u32) {
    (each.iter().copied().max().unwrap_or(0), each.iter().sum())
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
