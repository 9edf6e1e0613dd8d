//! The only writer of the shared control maps: VIPs, backends, Maglev
//! rings, syslog live sets, QUIC server ids and settings. Writes are
//! ordered so the data path never sees a VIP whose ring is not ready, or a
//! ring slot naming a backend that is not written yet.

use std::collections::BTreeMap;

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData},
};
use xlb_common::{
    BACKEND_UNUSED, Backend, FORWARD_DSR, FORWARD_NAT, LiveSet, MAP_BACKENDS, MAP_LIVE,
    MAP_NEXTHOP, MAP_QUIC_SERVERS, MAP_RING, MAP_SETTINGS, MAP_VIPS, MAX_SYSLOG_BACKENDS, MAX_VIPS,
    NextHop, PROTO_TCP, PROTO_UDP, QuicServerKey, STEER_FLOW, STEER_QUIC, STEER_SYSLOG, Settings,
    VipInfo, VipKey,
};

use super::{
    addr::{ip_words, socket_words},
    maglev,
};
use crate::{
    config::{Config, Forward, Global, L4Vip, Protocol, Steering},
    registry::Registry,
};

pub struct Maps {
    vips: HashMap<MapData, VipKey, VipInfo>,
    backends: Array<MapData, Backend>,
    ring: Array<MapData, u32>,
    live: Array<MapData, LiveSet>,
    quic: HashMap<MapData, QuicServerKey, u32>,
    next_hops: Array<MapData, NextHop>,
    settings: Array<MapData, Settings>,
    ring_size: u32,
    /// What each VIP id's ring holds now, to write only changed slots.
    rings: BTreeMap<u32, Vec<u32>>,
    written_vips: BTreeMap<VipKey, VipInfo>,
    written_backends: BTreeMap<u32, Backend>,
    written_live: BTreeMap<u32, LiveSet>,
    written_quic: BTreeMap<QuicServerKey, u32>,
}

impl Maps {
    pub fn take(ebpf: &mut Ebpf, ring_size: u32) -> anyhow::Result<Self> {
        let mut take = |name: &str| ebpf.take_map(name).with_context(|| format!("map {name}"));
        Ok(Maps {
            vips: HashMap::try_from(take(MAP_VIPS)?)?,
            backends: Array::try_from(take(MAP_BACKENDS)?)?,
            ring: Array::try_from(take(MAP_RING)?)?,
            live: Array::try_from(take(MAP_LIVE)?)?,
            quic: HashMap::try_from(take(MAP_QUIC_SERVERS)?)?,
            next_hops: Array::try_from(take(MAP_NEXTHOP)?)?,
            settings: Array::try_from(take(MAP_SETTINGS)?)?,
            ring_size,
            rings: BTreeMap::new(),
            written_vips: BTreeMap::new(),
            written_backends: BTreeMap::new(),
            written_live: BTreeMap::new(),
            written_quic: BTreeMap::new(),
        })
    }

    /// Bring the maps in line with `config` and `registry`.
    pub fn sync(&mut self, config: &Config, registry: &Registry) -> anyhow::Result<()> {
        anyhow::ensure!(
            config.l4.len() <= MAX_VIPS as usize,
            "at most {MAX_VIPS} [[l4]] VIPs"
        );
        self.settings
            .set(0, settings(&config.global), 0)
            .context("writing settings")?;
        // 1. Backends that exist now.
        let mut wanted_backends = BTreeMap::new();
        for s in registry.servers() {
            let (addr, port, family) = socket_words(s.address);
            let be = Backend {
                addr,
                port,
                family,
                state: s.state(),
                weight: s.weight,
            };
            wanted_backends.insert(s.id, be);
        }
        for (&id, be) in &wanted_backends {
            let old = self.written_backends.get(&id);
            if old == Some(be) {
                continue;
            }
            self.backends.set(id, be, 0).context("writing a backend")?;
            if old.is_none_or(|o| o.addr != be.addr) {
                // The cached route was for another address.
                self.next_hops
                    .set(id, NextHop::default(), 0)
                    .context("clearing a next hop")?;
            }
        }
        // 2. Per-VIP steering state and rings, then 3. VIP entries.
        let mut wanted_vips = BTreeMap::new();
        let mut wanted_live = BTreeMap::new();
        let mut wanted_quic = BTreeMap::new();
        for (vip_id, l4) in config.l4.iter().enumerate() {
            let vip_id = vip_id as u32;
            let members = registry.ring_members(&l4.backend);
            let table = maglev::build(&members, self.ring_size);
            self.write_ring(vip_id, table)?;
            wanted_live.insert(vip_id, live_set(registry, &l4.backend));
            for s in registry.in_backend(&l4.backend) {
                if let Some(server_id) = s.quic_server_id {
                    wanted_quic.insert(QuicServerKey { vip_id, server_id }, s.id);
                }
            }
            let (key, info) = vip_entry(l4, vip_id);
            wanted_vips.insert(key, info);
            // The port-0 entry IP fragments use: the first VIP of this
            // address and protocol.
            wanted_vips.entry(VipKey { port: 0, ..key }).or_insert(info);
        }
        for (&vip_id, set) in &wanted_live {
            if self.written_live.get(&vip_id) != Some(set) {
                self.live
                    .set(vip_id, set, 0)
                    .context("writing a live set")?;
            }
        }
        for (key, id) in &wanted_quic {
            if self.written_quic.get(key) != Some(id) {
                self.quic.insert(key, id, 0).context("writing a QUIC id")?;
            }
        }
        for (key, info) in &wanted_vips {
            if self.written_vips.get(key) != Some(info) {
                self.vips.insert(key, info, 0).context("writing a VIP")?;
            }
        }
        // 4. Retire what is gone: VIPs first, then their state, then backends.
        for key in self.written_vips.keys() {
            if !wanted_vips.contains_key(key) {
                self.vips.remove(key).context("removing a VIP")?;
            }
        }
        for key in self.written_quic.keys() {
            if !wanted_quic.contains_key(key) {
                self.quic.remove(key).context("removing a QUIC id")?;
            }
        }
        for &id in self.written_backends.keys() {
            if !wanted_backends.contains_key(&id) {
                let unused = Backend {
                    state: BACKEND_UNUSED,
                    ..Default::default()
                };
                self.backends
                    .set(id, unused, 0)
                    .context("retiring a backend")?;
            }
        }
        self.written_vips = wanted_vips;
        self.written_backends = wanted_backends;
        self.written_live = wanted_live;
        self.written_quic = wanted_quic;
        Ok(())
    }

    fn write_ring(&mut self, vip_id: u32, table: Vec<u32>) -> anyhow::Result<()> {
        let base = vip_id * self.ring_size;
        let old = self.rings.get(&vip_id);
        for (slot, &id) in table.iter().enumerate() {
            if old.is_some_and(|old| old[slot] == id) {
                continue;
            }
            self.ring
                .set(base + slot as u32, id, 0)
                .context("writing a Maglev slot")?;
        }
        self.rings.insert(vip_id, table);
        Ok(())
    }
}

/// The map key and value of one `[[l4]]`.
pub fn vip_entry(l4: &L4Vip, vip_id: u32) -> (VipKey, VipInfo) {
    let (addr, port, family) = socket_words(l4.vip);
    let key = VipKey {
        addr,
        port,
        proto: match l4.protocol {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
        },
        family,
    };
    let info = VipInfo {
        vip_id,
        forward: match l4.forward {
            Forward::Nat => FORWARD_NAT,
            Forward::Dsr => FORWARD_DSR,
        },
        steering: match l4.steering {
            Steering::Flow => STEER_FLOW,
            Steering::Syslog => STEER_SYSLOG,
            Steering::Quic => STEER_QUIC,
        },
        quic_sid_offset: l4.quic_sid_offset,
        quic_sid_len: if l4.steering == Steering::Quic {
            l4.quic_sid_len
        } else {
            0
        },
        udp_idle_timeout_ms: l4.udp_idle_timeout_ms,
    };
    (key, info)
}

/// The live servers of a backend pool in id order (syslog round robin).
fn live_set(registry: &Registry, backend: &str) -> LiveSet {
    let mut set = LiveSet::default();
    for s in registry.in_backend(backend).filter(|s| s.is_live()) {
        if set.count as usize == MAX_SYSLOG_BACKENDS {
            tracing::warn!(
                backend,
                "syslog spreads over the first {MAX_SYSLOG_BACKENDS} live servers only"
            );
            break;
        }
        set.ids[set.count as usize] = s.id;
        set.count += 1;
    }
    set
}

fn settings(global: &Global) -> Settings {
    let (v4, bits) = global.dsr_source_v4;
    let (v6, _) = ip_words(global.dsr_source_v6.into());
    Settings {
        flood_new_flows_per_sec: global.flood_new_flows_per_sec,
        dsr_source_v4: u32::from_ne_bytes(v4.octets()),
        dsr_source_v4_host_mask: u32::MAX >> bits,
        dsr_source_v6: v6,
    }
}
