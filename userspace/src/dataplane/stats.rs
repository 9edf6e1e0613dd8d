//! Reading the data path's per-CPU counters (summed over CPUs), from a
//! loaded object or from the pinned maps of a running daemon.

use std::path::Path;

use anyhow::Context as _;
use aya::maps::{Map, MapData, PerCpuArray};
use xlb_common::{
    Counters, MAP_BACKEND_STATS, MAP_STATS, MAP_VIP_STATS, MAX_BACKENDS, MAX_VIPS, STAT_COUNT, Stat,
};

pub struct StatsReader {
    vips: PerCpuArray<MapData, Counters>,
    backends: PerCpuArray<MapData, Counters>,
    global: PerCpuArray<MapData, u64>,
}

impl StatsReader {
    /// Take the counter maps out of a loaded object.
    pub fn take(ebpf: &mut aya::Ebpf) -> anyhow::Result<Self> {
        let mut take = |name: &str| ebpf.take_map(name).with_context(|| format!("map {name}"));
        Ok(StatsReader {
            vips: PerCpuArray::try_from(take(MAP_VIP_STATS)?)?,
            backends: PerCpuArray::try_from(take(MAP_BACKEND_STATS)?)?,
            global: PerCpuArray::try_from(take(MAP_STATS)?)?,
        })
    }

    /// Open the pinned maps under `pin_dir`.
    pub fn open_pinned(pin_dir: &Path) -> anyhow::Result<Self> {
        let open = |name: &str| -> anyhow::Result<Map> {
            let path = pin_dir.join(name);
            let data = MapData::from_pin(&path)
                .with_context(|| format!("opening {} (is xlb running?)", path.display()))?;
            Ok(Map::PerCpuArray(data))
        };
        Ok(StatsReader {
            vips: PerCpuArray::try_from(open(MAP_VIP_STATS)?)?,
            backends: PerCpuArray::try_from(open(MAP_BACKEND_STATS)?)?,
            global: PerCpuArray::try_from(open(MAP_STATS)?)?,
        })
    }

    pub fn vip(&self, vip_id: u32) -> anyhow::Result<Counters> {
        anyhow::ensure!(vip_id < MAX_VIPS, "vip id {vip_id} out of range");
        sum_counters(&self.vips, vip_id)
    }

    pub fn backend(&self, backend_id: u32) -> anyhow::Result<Counters> {
        anyhow::ensure!(
            backend_id < MAX_BACKENDS,
            "backend id {backend_id} out of range"
        );
        sum_counters(&self.backends, backend_id)
    }

    pub fn stat(&self, stat: Stat) -> anyhow::Result<u64> {
        debug_assert!((stat as u32) < STAT_COUNT);
        Ok(self.global.get(&(stat as u32), 0)?.iter().sum())
    }
}

fn sum_counters(map: &PerCpuArray<MapData, Counters>, index: u32) -> anyhow::Result<Counters> {
    let mut total = Counters::default();
    for c in map.get(&index, 0)?.iter() {
        total.packets += c.packets;
        total.bytes += c.bytes;
    }
    Ok(total)
}
