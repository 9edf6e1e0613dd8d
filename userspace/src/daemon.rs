//! `xlb run`: load and attach the data path, keep the shared maps in line
//! with the config and the health checks, reload on SIGHUP, and detach
//! cleanly on SIGINT/SIGTERM.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{error, info, warn};

use crate::{
    config::{self, Config},
    dataplane::{loader, maps::Maps},
    health,
    l7::{self, L7},
    registry::Registry,
};

pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    // Handlers first: a signal right after start-up still detaches cleanly.
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut config = config::load_with(config_path, &l7::config_checks())?;
    let mut registry = Registry::from_config(&config)?;

    let mut ebpf = loader::load(config.global.maglev_size)?;
    let _pins = loader::pin_maps(&ebpf, &config.global.bpf_pin_path)?;
    let mut maps = Maps::take(&mut ebpf, config.global.maglev_size)?;
    maps.sync(&config, &registry)
        .context("filling the data path maps")?;
    loader::attach(&mut ebpf, &config.xdp)?;

    // The L7 tier follows server states through this channel.
    let (view_tx, _view) = watch::channel(Arc::new(registry.snapshot()));
    let mut l7 = L7::start(&config, view_tx.subscribe())
        .await
        .context("starting the L7 frontends")?;
    info!(
        interfaces = ?config.xdp.iter().map(|x| x.interface.as_str()).collect::<Vec<_>>(),
        vips = config.l4.len(),
        frontends = config.frontend.len(),
        servers = registry.servers().count(),
        "xlb running"
    );
    let (events_tx, mut events) = mpsc::channel(256);
    let mut checks = start_checks(&config, &registry, &events_tx);

    loop {
        tokio::select! {
            Some(t) = events.recv() => {
                if registry.set_healthy(t.server_id, t.healthy) {
                    if let Err(e) = maps.sync(&config, &registry) {
                        error!("updating the data path after a health change: {e:#}");
                    }
                    view_tx.send_replace(Arc::new(registry.snapshot()));
                }
            }
            _ = sighup.recv() => {
                match reload(config_path, &config) {
                    Ok(new) => {
                        // Bind new L7 listeners first: a failure there
                        // changes nothing.
                        let staged = match l7.prepare(&new).await {
                            Ok(staged) => staged,
                            Err(e) => {
                                error!("applying the reloaded config failed: L7 frontends: {e:#}");
                                continue;
                            }
                        };
                        if let Err(e) = apply(&new, &mut registry, &mut maps) {
                            error!("applying the reloaded config failed: {e:#}");
                            continue;
                        }
                        view_tx.send_replace(Arc::new(registry.snapshot()));
                        l7.commit(staged);
                        stop_checks(&mut checks);
                        checks = start_checks(&new, &registry, &events_tx);
                        config = new;
                        info!("config reloaded");
                    }
                    Err(e) => error!("reload rejected, keeping the running config: {e:#}"),
                }
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    stop_checks(&mut checks);
    drop(l7);
    info!("xlb stopping: detaching XDP programs");
    drop(ebpf);
    Ok(())
}

/// Bring the registry and the maps to a reloaded config.
fn apply(config: &Config, registry: &mut Registry, maps: &mut Maps) -> anyhow::Result<()> {
    registry.reconcile(config)?;
    maps.sync(config, registry)
}

/// Parse the new config and refuse changes that need a restart.
fn reload(path: &Path, running: &Config) -> anyhow::Result<Config> {
    let new = config::load_with(path, &l7::config_checks())?;
    if new.xdp != running.xdp {
        anyhow::bail!("[[xdp]] interfaces changed: restart xlb to apply");
    }
    if new.global != running.global {
        warn!("[global] changes take effect on restart; kept the running values");
    }
    Ok(Config {
        global: running.global.clone(),
        ..new
    })
}

fn start_checks(
    config: &Config,
    registry: &Registry,
    events: &mpsc::Sender<health::Transition>,
) -> BTreeMap<u32, JoinHandle<()>> {
    let mut tasks = BTreeMap::new();
    for pool in &config.backend {
        for server in registry.in_backend(&pool.name) {
            let target = health::Target {
                server_id: server.id,
                label: server.key.clone(),
                address: server.address,
                check: pool.health.clone(),
            };
            if let Some(task) = health::spawn(target, events.clone()) {
                tasks.insert(server.id, task);
            }
        }
    }
    tasks
}

fn stop_checks(tasks: &mut BTreeMap<u32, JoinHandle<()>>) {
    for (_, task) in std::mem::take(tasks) {
        task.abort();
    }
}
