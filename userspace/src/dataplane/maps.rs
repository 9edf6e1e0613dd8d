//! The only writer of the shared control maps (VIPs, backends, Maglev
//! rings). Writes are ordered so the data path never sees a VIP whose ring
//! is not ready, or a ring slot naming a backend that is not written yet.

use std::{collections::BTreeMap, net::SocketAddr};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData},
};
use xlb_common::{
    BACKEND_UNUSED, Backend, MAP_BACKENDS, MAP_RING, MAP_VIPS_V4, MAX_VIPS, PROTO_TCP, PROTO_UDP,
    VIP_FORWARD_DSR, VIP_FORWARD_NAT, VipInfo, VipKeyV4,
};

use super::{addr::socket_words, maglev};
use crate::{
    config::{Config, Forward, Protocol},
    registry::Registry,
};

pub struct Maps {
    vips: HashMap<MapData, VipKeyV4, VipInfo>,
    backends: Array<MapData, Backend>,
    ring: Array<MapData, u32>,
    ring_size: u32,
    /// What each VIP id's ring holds now, to write only changed slots.
    rings: BTreeMap<u32, Vec<u32>>,
    written_vips: BTreeMap<VipKeyV4, VipInfo>,
    written_backends: BTreeMap<u32, Backend>,
}

impl Maps {
    pub fn take(ebpf: &mut Ebpf, ring_size: u32) -> anyhow::Result<Self> {
        let mut take = |name: &str| ebpf.take_map(name).with_context(|| format!("map {name}"));
        Ok(Maps {
            vips: HashMap::try_from(take(MAP_VIPS_V4)?)?,
            backends: Array::try_from(take(MAP_BACKENDS)?)?,
            ring: Array::try_from(take(MAP_RING)?)?,
            ring_size,
            rings: BTreeMap::new(),
            written_vips: BTreeMap::new(),
            written_backends: BTreeMap::new(),
        })
    }

    /// Bring the maps in line with `config` and `registry`.
    pub fn sync(&mut self, config: &Config, registry: &Registry) -> anyhow::Result<()> {
        anyhow::ensure!(
            config.l4.len() <= MAX_VIPS as usize,
            "at most {MAX_VIPS} [[l4]] VIPs"
        );
        // 1. Backends that exist now.
        let mut wanted_backends = BTreeMap::new();
        for s in registry.servers() {
            let (addr, port, family) = socket_words(s.address);
            wanted_backends.insert(
                s.id,
                Backend {
                    addr,
                    port,
                    family,
                    state: s.state(),
                    weight: s.weight,
                },
            );
        }
        for (&id, be) in &wanted_backends {
            if self.written_backends.get(&id) != Some(be) {
                self.backends.set(id, be, 0).context("writing a backend")?;
            }
        }
        // 2. Rings, then 3. VIP entries.
        let mut wanted_vips = BTreeMap::new();
        for (vip_id, l4) in config.l4.iter().enumerate() {
            let vip_id = vip_id as u32;
            let members = registry.ring_members(&l4.backend);
            let table = maglev::build(&members, self.ring_size);
            self.write_ring(vip_id, table)?;
            let SocketAddr::V4(vip) = l4.vip else {
                anyhow::bail!("[[l4]] {}: IPv6 VIPs are not supported yet", l4.name);
            };
            let key = VipKeyV4 {
                addr: u32::from_ne_bytes(vip.ip().octets()),
                port: vip.port().to_be(),
                proto: match l4.protocol {
                    Protocol::Tcp => PROTO_TCP,
                    Protocol::Udp => PROTO_UDP,
                },
                pad: 0,
            };
            let flags = match l4.forward {
                Forward::Nat => VIP_FORWARD_NAT,
                Forward::Dsr => VIP_FORWARD_DSR,
            };
            wanted_vips.insert(key, VipInfo { vip_id, flags });
        }
        for (key, info) in &wanted_vips {
            if self.written_vips.get(key) != Some(info) {
                self.vips.insert(key, info, 0).context("writing a VIP")?;
            }
        }
        // 4. Retire what is gone: VIPs first, then their backends.
        for key in self.written_vips.keys() {
            if !wanted_vips.contains_key(key) {
                self.vips.remove(key).context("removing a VIP")?;
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
