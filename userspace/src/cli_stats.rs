//! `xlb stats`: the data path counters of a running daemon, named after
//! the config (server ids follow the config order, as the daemon assigns
//! them at start).

use std::path::Path;

use xlb_common::Stat;

use crate::{config, dataplane::stats::StatsReader, registry::Registry};

pub fn print(config_path: &Path) -> anyhow::Result<()> {
    let config = config::load(config_path)?;
    let registry = Registry::from_config(&config)?;
    let reader = StatsReader::open_pinned(&config.global.bpf_pin_path)?;
    for (vip_id, l4) in config.l4.iter().enumerate() {
        let c = reader.vip(vip_id as u32)?;
        println!(
            "vip {} {} packets={} bytes={}",
            l4.name, l4.vip, c.packets, c.bytes
        );
    }
    for server in registry.servers() {
        let c = reader.backend(server.id)?;
        println!(
            "server {} {} packets={} bytes={}",
            server.key, server.address, c.packets, c.bytes
        );
    }
    for &stat in Stat::ALL {
        println!("stat {} {}", stat.name(), reader.stat(stat)?);
    }
    Ok(())
}
