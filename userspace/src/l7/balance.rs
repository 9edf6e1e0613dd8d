//! Backend choice for one request, from the shared server snapshot: only
//! servers whose effective state is UP (healthy, ready, weight > 0) take
//! new requests. One [`Balancer`] per backend pool; the in-flight counts
//! ([`Load`]) are shared by every pool since servers are numbered globally.
//!
//! - `roundrobin`: smooth weighted round robin (nginx): equal weights go
//!   strictly in turn, others interleave in proportion.
//! - `leastconn`: fewest requests in flight relative to weight; ties in turn.
//! - `random`: power of two choices: two weighted random picks, the less
//!   loaded wins.
//! - `source`, `uri`: weighted rendezvous hashing of the client address or
//!   the path, so a key sticks to its server while that server is up and
//!   only the keys of a server that leaves move.
//! - `maglev`: the same Maglev table the kernel tier builds
//!   ([`crate::dataplane::maglev::build`]), indexed by a hash of the
//!   client address.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
};

use smallvec::SmallVec;
use xlb_common::{MAX_BACKENDS, NO_BACKEND, hash::name_hash};

use crate::{
    config::Balance,
    dataplane::maglev::{self, RingMember},
    registry::{ServerEntry, Snapshot},
};

/// The server chosen for one attempt: borrowed from the request's
/// snapshot, so choosing allocates nothing.
pub type Pick<'a> = &'a ServerEntry;

/// Live servers of one pool, kept on the stack for the usual pool sizes.
type Live<'a> = SmallVec<[&'a ServerEntry; 16]>;

/// What the hashing algorithms hash.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    pub client: IpAddr,
    pub path: &'a str,
}

/// Requests per server id (all pools): in flight, and sent since start
/// (`show stat`, metrics).
pub struct Load {
    in_flight: Vec<AtomicU32>,
    total: Vec<AtomicU64>,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            in_flight: (0..MAX_BACKENDS).map(|_| AtomicU32::new(0)).collect(),
            total: (0..MAX_BACKENDS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Load {
    pub fn get(&self, id: u32) -> u32 {
        self.in_flight
            .get(id as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Attempts sent to `id` since the daemon started (tunnels included).
    pub fn total(&self, id: u32) -> u64 {
        self.total
            .get(id as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Counts one request on `id` until the guard drops.
    pub fn start(self: &Arc<Self>, id: u32) -> InFlight {
        if let Some(c) = self.in_flight.get(id as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(c) = self.total.get(id as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        InFlight {
            load: self.clone(),
            id,
        }
    }
}

pub struct InFlight {
    load: Arc<Load>,
    id: u32,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(c) = self.load.in_flight.get(self.id as usize) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Smooth weighted round robin's state: each server's current weight,
/// pruned of servers that left when the snapshot changes.
#[derive(Default)]
struct RoundRobin {
    current: HashMap<u32, i64, super::FastHash>,
    /// The snapshot `current` was last pruned for.
    pruned_for: Option<Arc<Snapshot>>,
}

/// A Maglev table and the snapshot it was built from.
type MaglevCache = (Arc<Snapshot>, Arc<Vec<u32>>);

pub struct Balancer {
    backend: String,
    algo: Balance,
    maglev_size: u32,
    /// Smooth weighted round robin: current weight per server id.
    rr: Mutex<RoundRobin>,
    /// Rotates the tie-break start for leastconn.
    turn: AtomicUsize,
    rng: AtomicU64,
    /// The Maglev table of the last snapshot seen.
    table: Mutex<Option<MaglevCache>>,
}

impl Balancer {
    pub fn new(backend: &str, algo: Balance, maglev_size: u32) -> Balancer {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        Balancer {
            backend: backend.to_string(),
            algo,
            maglev_size,
            rr: Mutex::new(RoundRobin::default()),
            turn: AtomicUsize::new(0),
            rng: AtomicU64::new(seed),
            table: Mutex::new(None),
        }
    }

    /// Chooses a live server not in `exclude` (servers already tried for
    /// this request); `None` when there is none.
    pub fn pick<'a>(
        &self,
        snap: &'a Arc<Snapshot>,
        key: Key<'_>,
        exclude: &[u32],
        load: &Load,
    ) -> Option<Pick<'a>> {
        let live: Live<'a> = snap
            .servers
            .iter()
            .filter(|s| s.backend == self.backend && s.is_live() && !exclude.contains(&s.id))
            .collect();
        if live.is_empty() {
            return None;
        }
        match self.algo {
            Balance::RoundRobin => self.round_robin(snap, &live, exclude.is_empty()),
            Balance::LeastConn => self.least_conn(&live, load),
            Balance::Random => self.two_choices(&live, load),
            Balance::Source => rendezvous(&live, &ip_bytes(key.client)),
            Balance::Uri => rendezvous(&live, key.path.as_bytes()),
            Balance::Maglev => self
                .maglev(snap, key.client)
                .and_then(|id| live.iter().copied().find(|s| s.id == id))
                // A retry (the table's choice was excluded) falls back to
                // rendezvous over the rest.
                .or_else(|| rendezvous(&live, &ip_bytes(key.client))),
        }
    }

    /// `prune`: `live` is every live server (no retry exclusions), so the
    /// state of servers that left can go (once per snapshot: the live set
    /// only changes with it); one coming back then starts level with the
    /// others.
    fn round_robin<'a>(
        &self,
        snap: &Arc<Snapshot>,
        live: &[&'a ServerEntry],
        prune: bool,
    ) -> Option<&'a ServerEntry> {
        let mut state = self.rr.lock().unwrap_or_else(|e| e.into_inner());
        let RoundRobin {
            current: rr,
            pruned_for,
        } = &mut *state;
        if prune && !pruned_for.as_ref().is_some_and(|p| Arc::ptr_eq(p, snap)) {
            rr.retain(|id, _| live.iter().any(|s| s.id == *id));
            *pruned_for = Some(snap.clone());
        }
        let total: i64 = live.iter().map(|s| s.weight as i64).sum();
        let mut best: Option<(&ServerEntry, i64)> = None;
        for s in live {
            let cw = rr.entry(s.id).or_insert(0);
            *cw += s.weight as i64;
            if best.is_none_or(|(_, b)| *cw > b) {
                best = Some((s, *cw));
            }
        }
        let (s, _) = best?;
        if let Some(cw) = rr.get_mut(&s.id) {
            *cw -= total;
        }
        Some(s)
    }

    fn least_conn<'a>(&self, live: &[&'a ServerEntry], load: &Load) -> Option<&'a ServerEntry> {
        let start = self.turn.fetch_add(1, Ordering::Relaxed);
        let n = live.len();
        let mut best: Option<&ServerEntry> = None;
        for i in 0..n {
            let s = live[(start + i) % n];
            best = match best {
                None => Some(s),
                // load(s)/w(s) < load(b)/w(b)
                Some(b)
                    if (load.get(s.id) as u64) * (b.weight as u64)
                        < (load.get(b.id) as u64) * (s.weight as u64) =>
                {
                    Some(s)
                }
                keep => keep,
            };
        }
        best
    }

    fn two_choices<'a>(&self, live: &[&'a ServerEntry], load: &Load) -> Option<&'a ServerEntry> {
        let a = self.weighted_random(live)?;
        let b = self.weighted_random(live)?;
        let (la, lb) = (load.get(a.id) as u64, load.get(b.id) as u64);
        Some(if lb * (a.weight as u64) < la * (b.weight as u64) {
            b
        } else {
            a
        })
    }

    fn weighted_random<'a>(&self, live: &[&'a ServerEntry]) -> Option<&'a ServerEntry> {
        let total: u64 = live.iter().map(|s| s.weight as u64).sum();
        if total == 0 {
            return None;
        }
        let mut r = self.next_random() % total;
        for s in live {
            if r < s.weight as u64 {
                return Some(s);
            }
            r -= s.weight as u64;
        }
        live.last().copied()
    }

    /// xorshift64*, shared by all threads (a lost update only repeats a number).
    fn next_random(&self) -> u64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The table's server for `client`, rebuilding the table when the
    /// snapshot changed.
    fn maglev(&self, snap: &Arc<Snapshot>, client: IpAddr) -> Option<u32> {
        let table = {
            let mut cached = self.table.lock().unwrap_or_else(|e| e.into_inner());
            match &*cached {
                Some((s, t)) if Arc::ptr_eq(s, snap) => t.clone(),
                _ => {
                    let members: Vec<RingMember> = snap
                        .in_backend(&self.backend)
                        .map(ServerEntry::ring_member)
                        .collect();
                    let t = Arc::new(maglev::build(&members, self.maglev_size));
                    *cached = Some((snap.clone(), t.clone()));
                    t
                }
            }
        };
        if table.is_empty() {
            return None;
        }
        let slot = (name_hash(&ip_bytes(client), 0x6c37) % table.len() as u64) as usize;
        Some(table[slot]).filter(|&id| id != NO_BACKEND)
    }
}

fn ip_bytes(ip: IpAddr) -> SmallVec<[u8; 16]> {
    match ip {
        IpAddr::V4(a) => SmallVec::from_slice(&a.octets()),
        IpAddr::V6(a) => SmallVec::from_slice(&a.octets()),
    }
}

/// Weighted rendezvous (highest random weight) hashing: the server with
/// the smallest `-ln(u) / weight`, `u` a hash of (key, server) in (0, 1).
fn rendezvous<'a>(live: &[&'a ServerEntry], key: &[u8]) -> Option<&'a ServerEntry> {
    let k = name_hash(key, 0x5ca1ab1e);
    live.iter()
        .copied()
        .map(|s| {
            let h = name_hash(s.key.as_bytes(), k);
            let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            (s, -u.ln() / s.weight as f64)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.key.cmp(&b.0.key)))
        .map(|(s, _)| s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn registry(weights: &[u32]) -> Registry {
        let mut text = String::from("[[backend]]\nname = \"web\"\n");
        for (i, w) in weights.iter().enumerate() {
            text.push_str(&format!(
                "[[backend.server]]\nname = \"web{}\"\naddress = \"198.18.1.{}:8080\"\nweight = {w}\n",
                i + 1,
                11 + i
            ));
        }
        Registry::from_config(&crate::config::parse(&text, "test.toml").unwrap()).unwrap()
    }

    fn snap(weights: &[u32]) -> Arc<Snapshot> {
        Arc::new(registry(weights).snapshot())
    }

    fn key(path: &str) -> Key<'_> {
        Key {
            client: "198.18.0.2".parse().unwrap(),
            path,
        }
    }

    fn names(b: &Balancer, s: &Arc<Snapshot>, n: usize) -> Vec<String> {
        let load = Load::default();
        (0..n)
            .map(|_| b.pick(s, key("/"), &[], &load).unwrap().name.clone())
            .collect()
    }

    #[test]
    fn round_robin_goes_in_turn_and_honours_weights() {
        let s = snap(&[100, 100, 100]);
        let b = Balancer::new("web", Balance::RoundRobin, 13);
        assert_eq!(
            names(&b, &s, 6),
            ["web1", "web2", "web3", "web1", "web2", "web3"]
        );
        let s = snap(&[300, 100, 100]);
        let b = Balancer::new("web", Balance::RoundRobin, 13);
        let got = names(&b, &s, 10);
        assert_eq!(got.iter().filter(|n| *n == "web1").count(), 6);
        // Smooth: web1 never three times in a row.
        assert!(
            !got.windows(3).any(|w| w.iter().all(|n| n == "web1")),
            "{got:?}"
        );
    }

    #[test]
    fn down_and_drained_servers_take_nothing() {
        let mut r = registry(&[100, 100, 0]);
        let id = r.find("web", "web1").unwrap().id;
        r.set_healthy(id, false);
        let s = Arc::new(r.snapshot());
        for algo in [
            Balance::RoundRobin,
            Balance::LeastConn,
            Balance::Random,
            Balance::Source,
            Balance::Uri,
            Balance::Maglev,
        ] {
            let b = Balancer::new("web", algo, 13);
            assert!(names(&b, &s, 20).iter().all(|n| n == "web2"), "{algo:?}");
        }
    }

    #[test]
    fn exclusion_moves_to_another_server_and_none_when_exhausted() {
        let s = snap(&[100, 100]);
        let load = Load::default();
        for algo in [Balance::Source, Balance::Maglev, Balance::RoundRobin] {
            let b = Balancer::new("web", algo, 13);
            let first = b.pick(&s, key("/"), &[], &load).unwrap();
            let second = b.pick(&s, key("/"), &[first.id], &load).unwrap();
            assert_ne!(first.id, second.id);
            assert!(b.pick(&s, key("/"), &[0, 1], &load).is_none());
        }
    }

    #[test]
    fn uri_and_source_are_sticky_and_spread() {
        let s = snap(&[100, 100, 100]);
        let load = Load::default();
        let b = Balancer::new("web", Balance::Uri, 13);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..60 {
            let p = format!("/item/{i}");
            let a = b.pick(&s, key(&p), &[], &load).unwrap();
            for _ in 0..3 {
                assert_eq!(b.pick(&s, key(&p), &[], &load).unwrap().id, a.id);
            }
            seen.insert(a.name.clone());
        }
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn least_conn_prefers_the_idle_server() {
        let s = snap(&[100, 100, 100]);
        let load = Arc::new(Load::default());
        let _busy = [load.start(0), load.start(0), load.start(1)];
        let b = Balancer::new("web", Balance::LeastConn, 13);
        for _ in 0..5 {
            assert_eq!(b.pick(&s, key("/"), &[], &load).unwrap().name, "web3");
        }
    }
}
