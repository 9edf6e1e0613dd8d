//! Server connections are reused under load: eight clients send 150
//! keep-alive requests each through an L7 frontend, for bodies of every
//! kind the proxy passes on differently (small with a length, read whole;
//! large with a length and chunked, streamed). The server must see about
//! one connection per request in flight, not one per request: a proxy
//! that closes its server connections instead of pooling them still
//! answers every request, and only the connection count shows it.

use std::{
    io::BufReader,
    net::{SocketAddr, TcpStream},
    thread,
    time::Duration,
};

use xlb_lab::l7::{
    NO_ACCESS_LOG, VIP, frontend_toml, head_toml, http_lab, http1_get, pool_toml, web_servers,
};

const CLIENTS: usize = 8;
const PER_CLIENT: usize = 150;
/// Small with a length (read whole), large with a length, chunked.
const PATHS: [&str; 3] = ["/text/1024", "/text/100000", "/stream/5000"];

#[test]
fn server_connections_are_pooled_under_load() {
    let (topo, web, dir) = http_lab("l7poolreuse", 1).unwrap();
    let text = format!(
        "{}{}{}",
        head_toml(&dir, "l7poolreuse"),
        pool_toml("web", "", &web_servers([1], 8080)),
        frontend_toml("fe", 8080, "web", NO_ACCESS_LOG),
    );
    let cfg = dir.write_config(&text).unwrap();
    let daemon = topo.lb().start_xlb(&cfg);
    let addr: SocketAddr = format!("{VIP}:8080").parse().unwrap();
    let before = web[0].connections();

    let client = topo.client();
    let results: Vec<anyhow::Result<usize>> = thread::scope(|s| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|i| {
                s.spawn(move || {
                    client.with(|| -> anyhow::Result<usize> {
                        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
                        c.set_read_timeout(Some(Duration::from_secs(5)))?;
                        let mut r = BufReader::new(c.try_clone()?);
                        for n in 0..PER_CLIENT {
                            let path = PATHS[(n + i) % PATHS.len()];
                            let (status, body) = http1_get(&mut c, &mut r, VIP, path)?;
                            anyhow::ensure!(status == 200, "{path}: status {status}");
                            let want: usize = path.rsplit('/').next().unwrap().parse()?;
                            anyhow::ensure!(body.len() == want, "{path}: {} bytes", body.len());
                        }
                        Ok(PER_CLIENT)
                    })?
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut done = 0;
    for r in results {
        done += r.unwrap_or_else(|e| panic!("a client failed: {e:#}\n{}", daemon.stderr()));
    }
    assert_eq!(done, CLIENTS * PER_CLIENT);

    // At most one server connection per request in flight (one per
    // client), with room for a request that arrives just before the
    // previous one's connection is back in its thread's pool.
    let opened = web[0].connections() - before;
    eprintln!("{done} requests over {opened} server connections");
    assert!(
        opened <= 2 * CLIENTS as u64,
        "{done} requests opened {opened} server connections: pooled connections are not reused"
    );
}
