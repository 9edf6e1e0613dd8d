//! The default lab of `cargo xtask run` (the `xtask-lab` binary): the
//! `xlb-lab` L4 topology (`xlb-run-*` namespaces), `lab-backend` web servers
//! web1..webN, and `xlb run` in the lb namespace with the embedded
//! `examples/lab.toml`. Prints what to try, then waits for SIGINT/SIGTERM:
//! xlb gets SIGTERM (it detaches its XDP program), the lab removes every
//! namespace and process it made.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use std::{env, fs, io};

use anyhow::{Context as _, Result, bail, ensure};
use xlb::config::{self, Balance, Config};
use xlb_lab::topology::{LB_IFACE, MAX_BACKENDS, VIP, backend_addr};
use xlb_lab::{L4Topology, Lab, Process};

/// The lab's test name: namespaces are `xlb-run-<role>`.
pub const TEST: &str = "run";
/// The default config, as shipped.
const CONFIG: &str = include_str!("../../examples/lab.toml");
const CONFIG_NAME: &str = "examples/lab.toml";
/// Where the lab writes [`CONFIG`] for `xlb run` and `xlb stats`.
const CONFIG_PATH: &str = "/run/xlb/lab.toml";
/// What xlb logs once its XDP program is attached.
const RUNNING: &str = "xlb running";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

/// Set by SIGINT/SIGTERM/SIGHUP.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Turns SIGINT, SIGTERM and SIGHUP into [`STOP`], so the lab always gets
/// to tear down. Children get the default dispositions back on exec.
fn catch_signals() -> Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to
        // an atomic, which is async-signal-safe.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error()).context("installing a signal handler");
        }
    }
    Ok(())
}

/// What the lab needs from the config, checked against the topology.
#[derive(Debug)]
struct Plan {
    vip: SocketAddr,
    /// The HTTP frontend on the lab VIP, if the config has one.
    frontend: Option<SocketAddr>,
    /// How the pool picks servers (what the L7 tour says of stickiness).
    balance: Balance,
    /// (name, address) of the VIP's servers; server k lives in `backendk`.
    servers: Vec<(String, SocketAddr)>,
    interval_ms: u64,
    fall: u32,
    rise: u32,
    /// The runtime API socket (`xlb ctl --socket`).
    api_socket: std::path::PathBuf,
    /// The pool's name (`set server POOL/SERVER ...`).
    backend: String,
}

impl Plan {
    /// The config must fit `L4Topology`: one `[[xdp]]` on the lb's
    /// interface, one `[[l4]]` on the lab VIP, server k at backend k's
    /// address.
    fn new(config: &Config) -> Result<Plan> {
        let ifaces: Vec<&str> = config.xdp.iter().map(|x| x.interface.as_str()).collect();
        ensure!(
            ifaces == [LB_IFACE],
            "{CONFIG_NAME}: the lab's lb has one interface, {LB_IFACE}; [[xdp]] lists {ifaces:?}"
        );
        let [l4] = config.l4.as_slice() else {
            bail!(
                "{CONFIG_NAME}: the lab expects one [[l4]] VIP, found {}",
                config.l4.len()
            );
        };
        ensure!(
            l4.vip.ip() == VIP,
            "{CONFIG_NAME}: [[l4]] {} is on {}, the lab's VIP is {VIP}",
            l4.name,
            l4.vip
        );
        let pool = config
            .backend(&l4.backend)
            .with_context(|| format!("{CONFIG_NAME}: no backend {}", l4.backend))?;
        ensure!(
            (1..=MAX_BACKENDS).contains(&pool.server.len()),
            "{CONFIG_NAME}: backend {} needs 1..={MAX_BACKENDS} servers",
            pool.name
        );
        for (i, server) in pool.server.iter().enumerate() {
            let k = i + 1;
            ensure!(
                server.address.ip() == backend_addr(k),
                "{CONFIG_NAME}: server {} is on {}; the lab's backend{k} is {}",
                server.name,
                server.address,
                backend_addr(k)
            );
        }
        let frontend = config
            .frontend
            .iter()
            .find(|f| f.bind.ip() == VIP && f.tls.is_none())
            .map(|f| f.bind);
        Ok(Plan {
            vip: l4.vip,
            frontend,
            balance: pool.balance,
            servers: pool
                .server
                .iter()
                .map(|s| (s.name.clone(), s.address))
                .collect(),
            interval_ms: pool.health.interval_ms,
            fall: pool.health.fall,
            rise: pool.health.rise,
            api_socket: config.global.api_socket.clone(),
            backend: pool.name.clone(),
        })
    }
}

/// Builds the lab, runs xlb in it until a signal, tears everything down.
pub fn run(xlb: &Path, backend: &Path) -> Result<()> {
    catch_signals()?;
    let config = config::parse(CONFIG, CONFIG_NAME)?;
    let plan = Plan::new(&config)?;
    for bin in [xlb, backend] {
        ensure!(bin.is_file(), "{} not found; build it first", bin.display());
    }

    let n = plan.servers.len();
    println!("lab: building namespaces xlb-{TEST}-{{sw,client,lb,backend1..{n}}}");
    let topology = L4Topology::build(Lab::new(TEST)?, n)?;
    let result = serve(&topology, &plan, xlb, backend);
    let names = topology.lab().namespaces();
    drop(topology);
    let _ = fs::remove_file(CONFIG_PATH);

    let left = left_behind()?;
    if left.is_empty() {
        println!("lab: removed namespaces {}", names.join(" "));
    } else {
        eprintln!("lab: namespaces left behind: {}", left.join(" "));
    }
    result
}

/// Starts the backends and xlb, prints the tour, waits for a signal, stops
/// xlb with SIGTERM. The processes die with the lab.
fn serve(topology: &L4Topology, plan: &Plan, xlb_bin: &Path, backend_bin: &Path) -> Result<()> {
    let mut backends = Vec::new();
    for (i, (name, addr)) in plan.servers.iter().enumerate() {
        if stop_requested() {
            return Ok(());
        }
        let ns = topology.backend(i + 1);
        let process = ns
            .spawn_backend_with(backend_bin, name, *addr, None)
            .with_context(|| format!("starting {name} in {}", ns.name()))?;
        println!(
            "lab: {name} listening on {addr} in {} (pid {})",
            ns.name(),
            process.pid()
        );
        backends.push(process);
    }

    if let Some(dir) = Path::new(CONFIG_PATH).parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(CONFIG_PATH, CONFIG).with_context(|| format!("writing {CONFIG_PATH}"))?;

    if stop_requested() {
        return Ok(());
    }
    let lb = topology.lb();
    let xlb_str = xlb_bin.to_string_lossy();
    let mut cmd = vec!["env"];
    if !io::stderr().is_terminal() {
        cmd.push("NO_COLOR=1");
    }
    cmd.extend([&*xlb_str, "run", "--config", CONFIG_PATH]);
    println!(
        "lab: starting {} run --config {CONFIG_PATH} in {}",
        shown(xlb_bin),
        lb.name()
    );
    let mut xlb = lb.spawn(&cmd)?;
    let mut log = Forward::default();

    let outcome = match wait_running(&mut xlb, &mut log) {
        Ok(Some(())) => {
            print_tour(topology, plan, &xlb, xlb_bin, backend_bin, &backends);
            wait_stop(&mut xlb, &mut log)
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    stop(&mut xlb, &mut log);
    outcome
}

/// Waits for [`RUNNING`] in xlb's log: `Some` then, `None` if a signal
/// came first; an error if xlb exits or the timeout passes.
fn wait_running(xlb: &mut Process, log: &mut Forward) -> Result<Option<()>> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if log.pump(xlb).iter().any(|line| line.contains(RUNNING)) {
            return Ok(Some(()));
        }
        if stop_requested() {
            return Ok(None);
        }
        if !xlb.is_running() {
            thread::sleep(Duration::from_millis(100));
            log.pump(xlb);
            bail!("xlb exited before it was running (its log is above)");
        }
        if Instant::now() >= deadline {
            bail!("xlb did not log {RUNNING:?} within {READY_TIMEOUT:?}");
        }
        thread::sleep(POLL);
    }
}

/// Forwards xlb's log until a signal; an error if xlb exits by itself.
fn wait_stop(xlb: &mut Process, log: &mut Forward) -> Result<()> {
    while !stop_requested() {
        log.pump(xlb);
        if !xlb.is_running() {
            thread::sleep(Duration::from_millis(100));
            log.pump(xlb);
            bail!("xlb exited unexpectedly (its log is above)");
        }
        thread::sleep(POLL);
    }
    Ok(())
}

/// SIGTERM to xlb, so it detaches its XDP program and removes its pins;
/// SIGKILL if it is still there after [`STOP_TIMEOUT`].
fn stop(xlb: &mut Process, log: &mut Forward) {
    if !xlb.is_running() {
        return;
    }
    println!("lab: stopping xlb (SIGTERM to pid {})", xlb.pid());
    // `ip netns exec` and `env` exec xlb, so the pid is xlb's.
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(xlb.pid() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_TIMEOUT;
    while xlb.is_running() && Instant::now() < deadline {
        log.pump(xlb);
        thread::sleep(POLL);
    }
    thread::sleep(Duration::from_millis(100));
    log.pump(xlb);
    if xlb.is_running() {
        eprintln!("lab: xlb did not stop within {STOP_TIMEOUT:?}; killing it");
        xlb.kill();
    } else {
        println!("lab: xlb stopped");
    }
}

/// Copies a child's new output lines to our stderr.
#[derive(Default)]
struct Forward {
    stdout: usize,
    stderr: usize,
}

impl Forward {
    /// Prints the lines not printed yet and returns them.
    fn pump(&mut self, process: &Process) -> Vec<String> {
        let mut new = Vec::new();
        for (lines, seen) in [
            (process.stdout_lines(), &mut self.stdout),
            (process.stderr_lines(), &mut self.stderr),
        ] {
            for line in lines.iter().skip(*seen) {
                eprintln!("{line}");
                new.push(line.clone());
            }
            *seen = lines.len();
        }
        new
    }
}

fn print_tour(
    topology: &L4Topology,
    plan: &Plan,
    xlb: &Process,
    xlb_bin: &Path,
    backend: &Path,
    backends: &[Process],
) {
    let client = topology.client().name();
    let lb = topology.lb().name();
    let xlb_pid = xlb.pid();
    let url = if plan.vip.port() == 80 {
        format!("http://{}/", plan.vip.ip())
    } else {
        format!("http://{}/", plan.vip)
    };
    let names: Vec<&str> = plan.servers.iter().map(|(n, _)| n.as_str()).collect();
    let names = names.join(", ");
    // The backend to stop in the health-check demo: the second, if any.
    let k = plan.servers.len().min(2);
    let (victim, victim_addr) = &plan.servers[k - 1];
    let victim_ns = topology.backend(k).name();
    let victim_pid = backends[k - 1].pid();
    let others: Vec<&str> = plan
        .servers
        .iter()
        .filter(|(n, _)| n != victim)
        .map(|(n, _)| n.as_str())
        .collect();

    println!(
        "\nlab: ready. xlb runs in {lb} on {LB_IFACE} with {CONFIG_PATH} ({CONFIG_NAME}): \
         VIP {} -> {names}",
        plan.vip
    );
    if let Some(frontend) = plan.frontend {
        println!("lab: HTTP frontend {frontend} (the L7 tier) -> {names}");
    }
    println!("\nTry, from another shell in this directory:\n");
    println!("  # one request to the VIP, answered by one of {names}");
    println!("  ip netns exec {client} curl -s {url}\n");
    println!("  # 30 requests, one connection each: the spread over the servers");
    println!(
        "  for i in $(seq 30); do ip netns exec {client} curl -s {url}; done | sort | uniq -c\n"
    );
    if let Some(frontend) = plan.frontend {
        println!("  # the same servers through the L7 tier: xlb's HTTP proxy adds X-Forwarded-For");
        println!("  # and logs each request here; HTTP/2 works too");
        // Balances that hash the client's address: one client, one server.
        let hashing = match plan.balance {
            Balance::Maglev => Some("maglev"),
            Balance::Source => Some("source"),
            _ => None,
        };
        if let Some(name) = hashing {
            println!(
                "  # ({name} hashes the client's address: this client keeps one server, x-backend,"
            );
            println!("  # until that server leaves; try the maint command below on it)");
        }
        println!("  ip netns exec {client} curl -si http://{frontend}/");
        println!("  ip netns exec {client} curl -s --http2-prior-knowledge http://{frontend}/\n");
    }
    // `ip netns exec` mounts a fresh /sys (and xlb a fresh bpffs on
    // /sys/fs/bpf) in a mount namespace of its own, so xlb's pinned maps
    // are only visible from that mount namespace: enter xlb's.
    println!("  # the data path counters (per VIP, per server, per path taken); xlb's maps");
    println!("  # are pinned in its own mount namespace, so enter its namespaces (pid {xlb_pid})");
    println!(
        "  nsenter -t {xlb_pid} -m -n {} stats --config {CONFIG_PATH}\n",
        xlb_bin.display()
    );
    // The API socket is a file under /run, which `ip netns exec` leaves
    // shared: no need to enter xlb's namespaces.
    let ctl = format!(
        "{} ctl --socket {}",
        xlb_bin.display(),
        plan.api_socket.display()
    );
    println!("  # the runtime API: every server's state, weight and counters");
    println!(
        "  {ctl} show stat
"
    );
    println!("  # take {victim} out of both tiers at once, then put it back");
    println!("  {ctl} set server {}/{victim} state maint", plan.backend);
    println!("  {ctl} set server {}/{victim} state ready\n", plan.backend);
    println!(
        "  # health checks: stop {victim} (pid {victim_pid} in {victim_ns}); after {} failed \
         checks, {} ms apart,",
        plan.fall, plan.interval_ms
    );
    println!(
        "  # xlb logs \"server is DOWN\" here and new connections go to {} only",
        if others.is_empty() {
            "no server".to_string()
        } else {
            others.join(" and ")
        }
    );
    println!("  kill {victim_pid}\n");
    println!(
        "  # start it again: after {} good checks xlb logs \"server is UP\"",
        plan.rise
    );
    println!(
        "  ip netns exec {victim_ns} {} --name {victim} --listen {victim_addr} &\n",
        shown(backend)
    );
    println!("Ctrl-C stops xlb and removes the xlb-{TEST}-* namespaces.\n");
}

/// `path` relative to the current directory when it lies below it.
fn shown(path: &Path) -> String {
    env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// `xlb-run-*` namespaces that still exist.
fn left_behind() -> Result<Vec<String>> {
    let prefix = format!("xlb-{TEST}-");
    let dir = PathBuf::from("/run/netns");
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_config_fits_the_topology() {
        let config = config::parse(CONFIG, CONFIG_NAME).unwrap();
        let plan = Plan::new(&config).unwrap();
        assert_eq!(plan.vip, SocketAddr::from((VIP, 80)));
        let expected: Vec<(String, SocketAddr)> = (1..=3)
            .map(|k| (format!("web{k}"), SocketAddr::from((backend_addr(k), 8080))))
            .collect();
        assert_eq!(plan.servers, expected);
        assert_eq!(plan.frontend, Some(SocketAddr::from((VIP, 8080))));
        assert_eq!(plan.balance, Balance::Maglev);
    }

    #[test]
    fn a_config_off_the_topology_is_refused() {
        let moved = CONFIG.replace("198.18.1.12:8080", "198.18.1.42:8080");
        let config = config::parse(&moved, CONFIG_NAME).unwrap();
        let err = Plan::new(&config).unwrap_err().to_string();
        assert!(err.contains("backend2"), "{err}");

        let iface = CONFIG.replace("interface = \"eth0\"", "interface = \"eth1\"");
        let config = config::parse(&iface, CONFIG_NAME).unwrap();
        assert!(Plan::new(&config).is_err());
    }
}
