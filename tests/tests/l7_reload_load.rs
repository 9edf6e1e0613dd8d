//! Reloads under load: while four clients send keep-alive requests through
//! an L7 frontend (each opening a new connection every 25 requests, so
//! accepts keep happening), the daemon reloads eight times, switching the
//! frontend's backend back and forth. Every request must succeed: the
//! listener stays bound across reloads, each L7 thread swaps its accept
//! loop, and open connections finish on their old settings.

use std::{
    io::BufReader,
    net::{SocketAddr, TcpStream},
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    thread,
    time::{Duration, Instant},
};

use xlb_lab::l7::{
    NO_ACCESS_LOG, VIP, frontend_toml, head_toml, http_lab, http1_get, pool_toml, web_servers,
};

const CLIENTS: usize = 4;
const RELOADS: usize = 8;
const PER_CONNECTION: usize = 25;

#[test]
fn reloads_under_load_lose_no_request() {
    let (topo, _web, dir) = http_lab("l7reloadload", 2).unwrap();
    let write = |backend: &str| {
        let text = format!(
            "{}{}{}{}",
            head_toml(&dir, "l7reloadload"),
            pool_toml("a", "", &web_servers([1], 8080)),
            pool_toml("b", "", &web_servers([2], 8080)),
            frontend_toml("fe", 8080, backend, NO_ACCESS_LOG),
        );
        dir.write_config(&text).unwrap()
    };
    let cfg = write("a");
    let mut daemon = topo.lb().start_xlb(&cfg);
    let addr: SocketAddr = format!("{VIP}:8080").parse().unwrap();

    let stop = AtomicBool::new(false);
    let (ok, failed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let seen = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let client = topo.client();
    let errors = thread::scope(|s| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(|| {
                    client
                        .with(|| {
                            let mut first_error = None;
                            while !stop.load(Ordering::Relaxed) {
                                let outcome = (|| -> anyhow::Result<()> {
                                    let mut c =
                                        TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
                                    c.set_read_timeout(Some(Duration::from_secs(5)))?;
                                    let mut r = BufReader::new(c.try_clone()?);
                                    for _ in 0..PER_CONNECTION {
                                        let (status, body) = http1_get(&mut c, &mut r, VIP, "/")?;
                                        anyhow::ensure!(status == 200, "status {status}");
                                        let k = match body.as_slice() {
                                            b"web1\n" => 0,
                                            b"web2\n" => 1,
                                            other => anyhow::bail!("body {other:?}"),
                                        };
                                        seen[k].fetch_add(1, Ordering::Relaxed);
                                        ok.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Ok(())
                                })();
                                if let Err(e) = outcome {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                    first_error.get_or_insert(format!("{e:#}"));
                                }
                            }
                            first_error
                        })
                        .unwrap()
                })
            })
            .collect();
        let started = Instant::now();
        for i in 0..RELOADS {
            thread::sleep(Duration::from_millis(250));
            write(if i % 2 == 0 { "b" } else { "a" });
            daemon
                .reload(Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("reload {i}: {e:#}"));
        }
        thread::sleep(Duration::from_millis(250));
        stop.store(true, Ordering::Relaxed);
        let errors: Vec<String> = workers
            .into_iter()
            .filter_map(|w| w.join().unwrap())
            .collect();
        eprintln!("{RELOADS} reloads in {:?}", started.elapsed());
        errors
    });
    let (ok, failed) = (ok.into_inner(), failed.into_inner());
    let seen = seen.map(AtomicUsize::into_inner);
    eprintln!(
        "requests: {ok} ok, {failed} failed; web1 {} web2 {}",
        seen[0], seen[1]
    );
    assert_eq!(
        failed,
        0,
        "failed requests: {errors:?}\n{}",
        daemon.stderr()
    );
    assert!(ok >= 400, "only {ok} requests in the run");
    // Both backends served: the reloads switched new connections over.
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "web1 {} web2 {}",
        seen[0],
        seen[1]
    );
}
