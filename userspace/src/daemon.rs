//! `xlb run`: load and attach the data path, keep the shared maps in line
//! with the config, the health checks and the runtime API, reload on
//! SIGHUP (or `reload`), and detach cleanly on SIGINT/SIGTERM.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{error, info, warn};

use crate::{
    api::{
        self, HttpMetrics,
        collect::{DataPathCollector, Sources},
        command::Command,
        control::{self, Change},
        show,
    },
    config::{self, Config, L4Vip},
    dataplane::{loader, maps::Maps, stats::StatsReader},
    health,
    l7::{self, L7},
    registry::{Registry, ServerEntry, Snapshot},
};

pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    // Handlers first: a signal right after start-up still detaches cleanly.
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let config = config::load_with(config_path, &l7::config_checks())?;
    // The API socket before anything else: a second daemon on the same
    // socket stops here, before it replaces the first one's pinned maps.
    let api_socket = api::server::bind(&config.global.api_socket)?;
    let registry = Registry::from_config(&config)?;

    let mut ebpf = loader::load(config.global.maglev_size)?;
    let _pins = loader::pin_maps(&ebpf, &config.global.bpf_pin_path)?;
    let mut maps = Maps::take(&mut ebpf, config.global.maglev_size)?;
    let stats = Arc::new(StatsReader::take(&mut ebpf)?);
    maps.sync(&config, &registry)
        .context("filling the data path maps")?;
    loader::attach(&mut ebpf, &config.xdp)?;

    // The L7 tier, the metrics and the API follow server states through
    // this channel.
    let (view_tx, _view) = watch::channel(Arc::new(registry.snapshot()));
    let (vips_tx, _vips) = watch::channel(Arc::new(config.l4.clone()));
    // Requests per server in the L7 tier, for `show stat` and metrics.
    let l7_load = Arc::new(l7::balance::Load::default());
    let sources = Sources {
        l7: l7_load.clone(),
        servers: view_tx.subscribe(),
        vips: vips_tx.subscribe(),
        stats: Some(stats.clone()),
    };
    let mut prometheus = prometheus_client::registry::Registry::default();
    let http_metrics = HttpMetrics::register(&mut prometheus);
    prometheus.register_collector(Box::new(DataPathCollector(sources.clone())));

    let l7 = L7::start(&config, view_tx.subscribe(), http_metrics, l7_load.clone())
        .await
        .context("starting the L7 frontends")?;
    let metrics_task = match config.global.metrics {
        Some(addr) => Some(api::http::spawn(addr, prometheus, sources).await?),
        None => None,
    };
    let (api_tx, mut api_rx) = mpsc::channel(64);
    let api_task = api::server::spawn(api_socket, api_tx);
    info!(
        interfaces = ?config.xdp.iter().map(|x| x.interface.as_str()).collect::<Vec<_>>(),
        vips = config.l4.len(),
        frontends = config.frontend.len(),
        servers = registry.servers().count(),
        "xlb running"
    );
    let (events_tx, mut events) = mpsc::channel(256);
    let checks = start_checks(&config, &registry, &events_tx);
    let mut daemon = Daemon {
        config_path: config_path.to_path_buf(),
        started: Instant::now(),
        config,
        registry,
        maps,
        stats,
        view_tx,
        vips_tx,
        l7,
        l7_load,
        checks,
        events_tx,
    };

    loop {
        tokio::select! {
            Some(t) = events.recv() => {
                if daemon.registry.set_healthy(t.server_id, t.healthy) {
                    if let Err(e) = daemon.maps.sync(&daemon.config, &daemon.registry) {
                        error!("updating the data path after a health change: {e:#}");
                    }
                    daemon.publish();
                }
            }
            _ = sighup.recv() => {
                if let Err(e) = daemon.reload().await {
                    error!("{e}");
                }
            }
            Some(request) = api_rx.recv() => {
                let answer = daemon.execute(request.command).await;
                let _ = request.reply.send(answer);
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    api_task.abort();
    if let Some(task) = metrics_task {
        task.abort();
    }
    stop_checks(&mut daemon.checks);
    drop(daemon);
    info!("xlb stopping: detaching XDP programs");
    drop(ebpf);
    Ok(())
}

/// What the loop owns: the only writer of the registry and the maps.
struct Daemon {
    config_path: PathBuf,
    started: Instant,
    config: Config,
    registry: Registry,
    maps: Maps,
    stats: Arc<StatsReader>,
    view_tx: watch::Sender<Arc<Snapshot>>,
    vips_tx: watch::Sender<Arc<Vec<L4Vip>>>,
    l7: L7,
    l7_load: Arc<l7::balance::Load>,
    checks: BTreeMap<u32, JoinHandle<()>>,
    events_tx: mpsc::Sender<health::Transition>,
}

impl Daemon {
    /// Both tiers see the registry as it is now: the maps are synced by the
    /// caller, this hands the L7 tier (and metrics) the new snapshot.
    fn publish(&self) {
        self.view_tx
            .send_replace(Arc::new(self.registry.snapshot()));
    }

    /// SIGHUP and `reload`. The error is the log line (and API answer).
    async fn reload(&mut self) -> Result<(), String> {
        let new = match reload(&self.config_path, &self.config) {
            Ok(new) => new,
            Err(e) => {
                return Err(format!(
                    "reload rejected, keeping the running config: {e:#}"
                ));
            }
        };
        // Bind new L7 listeners first: a failure there changes nothing.
        let staged = self
            .l7
            .prepare(&new)
            .await
            .map_err(|e| format!("applying the reloaded config failed: L7 frontends: {e:#}"))?;
        let before = self.registry.clone();
        if let Err(e) = apply(&new, &mut self.registry, &mut self.maps) {
            self.restore(before);
            return Err(format!("applying the reloaded config failed: {e:#}"));
        }
        self.publish();
        self.vips_tx.send_replace(Arc::new(new.l4.clone()));
        self.l7.commit(staged);
        stop_checks(&mut self.checks);
        self.checks = start_checks(&new, &self.registry, &self.events_tx);
        self.config = new;
        info!("config reloaded");
        Ok(())
    }

    /// One runtime API command; the answer text (`error: ...` on failure).
    async fn execute(&mut self, command: Command) -> String {
        let servers = || self.registry.snapshot().servers;
        match command {
            Command::Help => api::command::HELP.to_string(),
            Command::ShowInfo => show::info(&show::Info {
                config_path: &self.config_path,
                uptime: self.started.elapsed(),
                backends: self.config.backend.len(),
                vips: self.config.l4.len(),
                frontends: self.config.frontend.len(),
                servers: &servers(),
                l7_conns: &self.l7.open_per_thread(),
            }),
            Command::ShowStat => show::stat(&servers(), Some(&self.stats), &self.l7_load),
            Command::ShowServersState => show::servers_state(&servers()),
            Command::Reload => match self.reload().await {
                Ok(()) => "config reloaded".to_string(),
                Err(e) => {
                    error!("{e}");
                    format!("error: {e}")
                }
            },
            change => match self.change(&change) {
                Ok(answer) => answer,
                Err(e) => format!("error: {e}"),
            },
        }
    }

    /// A change the data path refused: the registry as it was `before`,
    /// and the maps synced to it again under the running config.
    fn restore(&mut self, before: Registry) {
        self.registry = before;
        if let Err(e) = self.maps.sync(&self.config, &self.registry) {
            error!("restoring the data path after a refused change: {e:#}");
        }
    }

    /// `set`/`add`/`del server`: registry, maps, snapshot, checks; the
    /// registry is put back when the maps refuse the change.
    fn change(&mut self, command: &Command) -> Result<String, String> {
        let before = self.registry.clone();
        let (change, answer) = control::apply(command, &mut self.registry, &self.config)?;
        if change == Change::Unchanged {
            return Ok(answer);
        }
        if let Err(e) = self.maps.sync(&self.config, &self.registry) {
            self.restore(before);
            return Err(format!("the data path refused the change: {e:#}"));
        }
        self.publish();
        match change {
            Change::Added(id) => self.start_check(id),
            Change::Removed(id) => {
                if let Some(task) = self.checks.remove(&id) {
                    task.abort();
                }
            }
            Change::Changed | Change::Unchanged => {}
        }
        info!("runtime API: {answer}");
        Ok(answer)
    }

    fn start_check(&mut self, id: u32) {
        let Some(server) = self.registry.get(id) else {
            return;
        };
        let Some(pool) = self.config.backend(&server.backend) else {
            return;
        };
        if let Some(task) = health::spawn(check_target(server, pool), self.events_tx.clone()) {
            self.checks.insert(id, task);
        }
    }
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

fn check_target(server: &ServerEntry, pool: &config::BackendPool) -> health::Target {
    health::Target {
        server_id: server.id,
        label: server.key.clone(),
        address: server.address,
        check: pool.health.clone(),
        send_proxy: pool.l7.send_proxy,
    }
}

fn start_checks(
    config: &Config,
    registry: &Registry,
    events: &mpsc::Sender<health::Transition>,
) -> BTreeMap<u32, JoinHandle<()>> {
    let mut tasks = BTreeMap::new();
    for pool in &config.backend {
        for server in registry.in_backend(&pool.name) {
            if let Some(task) = health::spawn(check_target(server, pool), events.clone()) {
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
