//! Metrics read at scrape time: server states from the registry snapshot
//! (the one the L7 tier follows) and the data path's per-CPU counters,
//! summed over CPUs, from the same maps `xlb stats` reads.

use std::sync::Arc;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};
use tokio::sync::watch;
use xlb_common::{Counters, Stat};

use crate::{config::L4Vip, dataplane::stats::StatsReader, registry::Snapshot};

/// Everything the scrape-time metrics and the `/stats` page read.
#[derive(Clone)]
pub struct Sources {
    pub servers: watch::Receiver<Arc<Snapshot>>,
    /// The running config's `[[l4]]` list: a VIP's id is its index.
    pub vips: watch::Receiver<Arc<Vec<L4Vip>>>,
    pub stats: Option<Arc<StatsReader>>,
    /// The L7 tier's requests per server.
    pub l7: Arc<crate::l7::balance::Load>,
}

#[derive(Clone)]
pub struct DataPathCollector(pub Sources);

impl std::fmt::Debug for DataPathCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataPathCollector")
    }
}

type Labels<'a> = [(&'static str, &'a str); 2];

impl Collector for DataPathCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let servers = self.0.servers.borrow().clone();
        let vips = self.0.vips.borrow().clone();

        let mut family = encoder.encode_descriptor(
            "xlb_backend_up",
            "1 when the server takes new flows and requests (UP), else 0",
            None,
            MetricType::Gauge,
        )?;
        for s in &servers.servers {
            let labels: Labels = [("backend", &s.backend), ("server", &s.name)];
            ConstGauge::new(i64::from(s.is_live())).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "xlb_backend_weight",
            "The server's current weight (0 drains)",
            None,
            MetricType::Gauge,
        )?;
        for s in &servers.servers {
            let labels: Labels = [("backend", &s.backend), ("server", &s.name)];
            ConstGauge::new(i64::from(s.weight)).encode(family.encode_family(&labels)?)?;
        }

        for (name, help, kind, pick) in [
            (
                "xlb_l7_server_requests",
                "Requests (and tunnels) the L7 tier sent to the server",
                MetricType::Counter,
                (|l: &crate::l7::balance::Load, id| l.total(id)) as fn(&_, u32) -> u64,
            ),
            (
                "xlb_l7_server_in_flight",
                "Requests (and open tunnels) of the L7 tier at the server now",
                MetricType::Gauge,
                |l, id| u64::from(l.get(id)),
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for s in &servers.servers {
                let labels: Labels = [("backend", &s.backend), ("server", &s.name)];
                let n = pick(&self.0.l7, s.id);
                if kind == MetricType::Counter {
                    ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
                } else {
                    ConstGauge::new(n as i64).encode(family.encode_family(&labels)?)?;
                }
            }
        }

        let Some(stats) = &self.0.stats else {
            return Ok(());
        };
        // Read every counter first: a failed read leaves the sample out.
        let vip_rows: Vec<(Labels, _)> = vips
            .iter()
            .enumerate()
            .map(|(i, l4)| {
                let labels = [("vip", l4.name.as_str()), ("backend", l4.backend.as_str())];
                (labels, stats.vip(i as u32).ok())
            })
            .collect();
        encode_packets_and_bytes(
            &mut encoder,
            ["xlb_l4_packets", "xlb_l4_bytes"],
            "the XDP program forwarded for the VIP",
            &vip_rows,
        )?;
        let server_rows: Vec<(Labels, _)> = servers
            .servers
            .iter()
            .map(|s| {
                let labels = [("backend", s.backend.as_str()), ("server", s.name.as_str())];
                (labels, stats.backend(s.id).ok())
            })
            .collect();
        encode_packets_and_bytes(
            &mut encoder,
            ["xlb_l4_server_packets", "xlb_l4_server_bytes"],
            "the XDP program forwarded to the server",
            &server_rows,
        )?;
        let mut family = encoder.encode_descriptor(
            "xlb_xdp_packets",
            "Packets by the XDP program's path and drop reason (see README, Packet handling rules)",
            None,
            MetricType::Counter,
        )?;
        for &stat in Stat::ALL {
            if let Ok(n) = stats.stat(stat) {
                let labels = [("reason", stat.name())];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The packets and bytes counter families `names` ("Packets ..." and
/// "Bytes ..." followed by `what`), one sample per row whose counters
/// could be read.
fn encode_packets_and_bytes(
    encoder: &mut DescriptorEncoder,
    names: [&'static str; 2],
    what: &str,
    rows: &[(Labels, Option<Counters>)],
) -> Result<(), std::fmt::Error> {
    type Pick = fn(&Counters) -> u64;
    let picks: [(&str, Pick); 2] = [("Packets", |c| c.packets), ("Bytes", |c| c.bytes)];
    for (name, (noun, pick)) in names.into_iter().zip(picks) {
        let help = format!("{noun} {what}");
        let mut family = encoder.encode_descriptor(name, &help, None, MetricType::Counter)?;
        for (labels, counters) in rows {
            if let Some(c) = counters {
                ConstCounter::new(pick(c)).encode(family.encode_family(labels)?)?;
            }
        }
    }
    Ok(())
}
