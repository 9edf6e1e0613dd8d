//! Weighted Maglev lookup tables with stable failover.
//!
//! A VIP's table has `size` slots (a prime, default 65537; the config
//! checks primality); each holds a backend id, and a new flow takes the
//! slot `flow_hash % size`. The table depends only on the members' keys
//! (stable names such as `"web/web1"`), weights and liveness, never on
//! input order, a random seed or a `HashMap`, so every node that runs the
//! same config builds the same table.
//!
//! Population (Maglev, NSDI '16, with weights): member `i` walks its own
//! permutation of the slots, `offset = name_hash(key, 0) % size`,
//! `skip = name_hash(key, 1) % (size - 1) + 1`,
//! `perm[j] = (offset + j * skip) % size`, and takes the next slot nobody
//! owns yet. Weights by credit: every round each member earns `weight`
//! credit and takes one slot per `max_weight` of credit, so shares follow
//! the weights.
//!
//! Stable failover: the table is first built over every member with a
//! weight (live or not), then over the live members only; a slot keeps its
//! first owner when that owner is live and takes the live table's owner
//! otherwise. Taking one member down therefore moves exactly its slots,
//! spread over the others, and bringing it back moves them home. Weight 0
//! (drain) takes a member out of both tables: new flows never pick it.

use xlb_common::{NO_BACKEND, hash::name_hash};

/// One server as the table builder sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingMember<'a> {
    /// Backend id written into the table.
    pub id: u32,
    /// Stable name, e.g. `"web/web1"`: it alone decides the permutation.
    pub key: &'a str,
    pub weight: u32,
    /// Up and not in maintenance.
    pub live: bool,
}

/// The table of `size` backend ids ([`NO_BACKEND`] everywhere when no
/// member with a weight is live).
///
/// `size` should be prime (the config enforces it) so that every
/// permutation visits every slot; for other sizes the walk falls back to
/// linear probing once a permutation is exhausted, so the result is still
/// a complete table, just less evenly spread.
pub fn build(members: &[RingMember], size: u32) -> Vec<u32> {
    let mut all: Vec<&RingMember> = members.iter().filter(|m| m.weight > 0).collect();
    all.sort_by(|a, b| a.key.cmp(b.key).then(a.id.cmp(&b.id)));
    if size == 0 {
        return Vec::new();
    }
    if !all.iter().any(|m| m.live) {
        return vec![NO_BACKEND; size as usize];
    }
    let full = populate(&all, size);
    if all.iter().all(|m| m.live) {
        return full.iter().map(|&i| all[i as usize].id).collect();
    }
    let live: Vec<&RingMember> = all.iter().copied().filter(|m| m.live).collect();
    let fallback = populate(&live, size);
    full.iter()
        .zip(&fallback)
        .map(|(&f, &l)| {
            let owner = all[f as usize];
            if owner.live {
                owner.id
            } else {
                live[l as usize].id
            }
        })
        .collect()
}

/// One member's walk over its permutation of the slots.
struct Walk {
    pos: u64,
    skip: u64,
    steps: u64,
}

impl Walk {
    fn new(key: &str, size: u64) -> Self {
        let offset = name_hash(key.as_bytes(), 0) % size;
        let skip = if size > 1 {
            name_hash(key.as_bytes(), 1) % (size - 1) + 1
        } else {
            1
        };
        Walk {
            pos: offset,
            skip,
            steps: 0,
        }
    }

    /// The next slot of the permutation. After `size` steps (only reachable
    /// when `size` is not prime) it probes linearly, which ends every walk.
    fn next(&mut self, size: u64) -> usize {
        let slot = self.pos;
        self.steps += 1;
        let step = if self.steps < size { self.skip } else { 1 };
        self.pos = (self.pos + step) % size;
        slot as usize
    }
}

/// Weighted Maglev population; entries are indexes into `members`, which
/// is non-empty and holds only weights > 0.
fn populate(members: &[&RingMember], size: u32) -> Vec<u32> {
    const EMPTY: u32 = u32::MAX;
    let m = size as u64;
    let mut walks: Vec<Walk> = members.iter().map(|x| Walk::new(x.key, m)).collect();
    let max_weight = members.iter().map(|x| x.weight as u64).max().unwrap_or(1);
    let mut credit = vec![0u64; members.len()];
    let mut table = vec![EMPTY; size as usize];
    let mut filled = 0u32;
    loop {
        for (i, member) in members.iter().enumerate() {
            credit[i] += member.weight as u64;
            while credit[i] >= max_weight {
                credit[i] -= max_weight;
                let slot = loop {
                    let c = walks[i].next(m);
                    if table[c] == EMPTY {
                        break c;
                    }
                };
                table[slot] = i as u32;
                filled += 1;
                if filled == size {
                    return table;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u32, key: &str) -> RingMember<'_> {
        RingMember {
            id,
            key,
            weight: 100,
            live: true,
        }
    }

    #[test]
    fn non_prime_and_tiny_sizes_still_fill_the_table() {
        let keys = ["a", "b", "c"];
        let members: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| member(i as u32, k))
            .collect();
        for size in [1, 2, 4, 12, 100, 1000] {
            let t = build(&members, size);
            assert_eq!(t.len(), size as usize);
            assert!(t.iter().all(|&id| id < 3), "size {size}");
        }
        assert!(build(&members, 0).is_empty());
        assert!(build(&[], 13).iter().all(|&id| id == NO_BACKEND));
    }

    #[test]
    fn walk_is_a_permutation_for_prime_sizes() {
        for size in [2u64, 3, 13, 1009] {
            let mut w = Walk::new("web/web1", size);
            let mut seen = vec![false; size as usize];
            for _ in 0..size {
                seen[w.next(size)] = true;
            }
            assert!(seen.iter().all(|&s| s), "size {size}");
        }
    }
}
