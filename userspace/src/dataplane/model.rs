//! A user-space reference model of the data path's backend choice
//! (connection table, then Maglev), written from the same rules as
//! `xdp-ebpf/src/balance.rs`. Tests run thousands of flows through both and
//! require the same verdict for every one.

use std::collections::HashMap;

use xlb_common::{BACKEND_DRAIN, BACKEND_UP, FlowKey, NO_BACKEND, hash::flow_hash};

use super::maglev;
use crate::{config::Config, registry::Registry};

pub struct ReferenceModel {
    ring_size: u32,
    /// Indexed by VIP id.
    rings: Vec<Vec<u32>>,
    states: HashMap<u32, u8>,
    flows: HashMap<FlowKey, u32>,
}

impl ReferenceModel {
    pub fn new(config: &Config, registry: &Registry) -> Self {
        let mut model = ReferenceModel {
            ring_size: config.global.maglev_size,
            rings: Vec::new(),
            states: HashMap::new(),
            flows: HashMap::new(),
        };
        model.update(config, registry);
        model
    }

    /// Follow a change of server states (as `Maps::sync` does); the
    /// connection table is kept.
    pub fn update(&mut self, config: &Config, registry: &Registry) {
        self.rings = config
            .l4
            .iter()
            .map(|l4| maglev::build(&registry.ring_members(&l4.backend), self.ring_size))
            .collect();
        self.states = registry.servers().map(|s| (s.id, s.state())).collect();
    }

    /// The backend id the data path must send this client -> VIP packet to,
    /// or None when it must drop it (no live backend).
    pub fn choose(&mut self, vip_id: u32, flow: &FlowKey) -> Option<u32> {
        if let Some(&id) = self.flows.get(flow) {
            if matches!(
                self.states.get(&id),
                Some(&BACKEND_UP) | Some(&BACKEND_DRAIN)
            ) {
                return Some(id);
            }
        }
        let ring = self.rings.get(vip_id as usize)?;
        let h = flow_hash(&flow.src, &flow.dst, flow.sport, flow.dport, flow.proto);
        let id = *ring.get((h % self.ring_size) as usize)?;
        if id == NO_BACKEND || self.states.get(&id) != Some(&BACKEND_UP) {
            return None;
        }
        self.flows.insert(*flow, id);
        Some(id)
    }
}
