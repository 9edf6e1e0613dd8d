//! The L7 tier's threads: one single-threaded tokio runtime per worker
//! (one worker per CPU by default), the way HAProxy and nginx run one
//! event loop per thread. A client connection, its requests and the
//! server connections they use all live on one thread: no work stealing,
//! no cross-thread wake-ups, and each worker keeps its own pool of server
//! connections.
//!
//! Every worker accepts on every listener (duplicated descriptors of one
//! socket), so whichever is free takes the next connection. A worker that
//! already holds more connections than the least loaded one hands the new
//! connection over, so keep-alive connections opened in a burst still end
//! up spread evenly. HTTP/3 connections, which all arrive through one UDP
//! socket, are handed to the least loaded worker by [`Spread::place`]
//! and counted the same way.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinHandle,
};
use tracing::{error, warn};

use super::{
    listener,
    proxy::{Frontend, Shared},
};

/// A frontend and the socket it accepts on.
#[derive(Clone)]
pub struct Serving {
    pub fe: Arc<Frontend>,
    pub listener: Arc<std::net::TcpListener>,
}

enum Command {
    /// Accept on these from now on (replaces what was accepted before;
    /// open connections stay).
    Serve(Vec<Serving>),
    /// A connection another worker accepted for this one.
    Adopt(Placed, std::net::TcpStream, SocketAddr, Arc<Frontend>),
    Stop,
}

/// What every worker knows of the others: their open connections and
/// their command queues.
struct Peers {
    open: Vec<AtomicUsize>,
    queues: Vec<mpsc::UnboundedSender<Command>>,
}

impl Peers {
    /// The least loaded worker and its open connections; a tie goes to
    /// `me`, then to the lowest index.
    fn least(self: &Arc<Self>, me: Option<usize>) -> (usize, usize) {
        self.open
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.load(Ordering::Relaxed)))
            .min_by_key(|&(i, n)| (n, Some(i) != me))
            .unwrap_or((me.unwrap_or(0), 0))
    }

    /// Counts a connection as open on `worker` until the result drops.
    fn count_on(self: &Arc<Self>, worker: usize) -> Placed {
        self.open[worker].fetch_add(1, Ordering::Relaxed);
        Placed {
            peers: self.clone(),
            worker,
        }
    }

    /// The worker a connection that came through the shared UDP socket
    /// (HTTP/3) goes to: the least loaded one.
    fn least_loaded(self: &Arc<Self>) -> Placed {
        self.count_on(self.least(None).0)
    }

    /// The worker a connection accepted by `me` should go to, counted as
    /// open there from now on: `me` unless another holds fewer
    /// connections. Keep-alive connections carry similar loads, so one
    /// worker with 9 of 16 would carry 12% more than the mean; a handover
    /// costs one message per connection, once.
    fn place(self: &Arc<Self>, me: usize) -> Placed {
        let (least, n) = self.least(Some(me));
        let mine = self.open[me].load(Ordering::Relaxed);
        self.count_on(if mine > n { least } else { me })
    }
}

/// One open connection counted on a worker until it drops.
pub struct Placed {
    peers: Arc<Peers>,
    worker: usize,
}

impl Drop for Placed {
    fn drop(&mut self) {
        self.peers.open[self.worker].fetch_sub(1, Ordering::Relaxed);
    }
}

/// The running workers.
pub struct Workers {
    spread: Spread,
}

/// Every worker's runtime and state (its server connection pool) and the
/// open-connection counts: what the HTTP/3 endpoints need to hand each
/// QUIC connection to a worker.
#[derive(Clone)]
pub struct Spread {
    peers: Arc<Peers>,
    workers: Arc<[(tokio::runtime::Handle, Arc<Shared>)]>,
}

impl Spread {
    /// Worker 0's runtime: the HTTP/3 endpoints' UDP sockets and drivers
    /// live there (see `h3`).
    pub fn first(&self) -> &tokio::runtime::Handle {
        &self.workers[0].0
    }

    /// The least loaded worker for a new connection, counted open there
    /// until the [`Placed`] drops: its runtime and state.
    pub fn place(&self) -> (Placed, &tokio::runtime::Handle, &Arc<Shared>) {
        let placed = self.peers.least_loaded();
        let (runtime, shared) = &self.workers[placed.worker];
        (placed, runtime, shared)
    }
}

impl Workers {
    /// Starts `count` worker threads; `shared` builds each worker's state
    /// (its own connection pool).
    pub fn start(count: usize, shared: impl Fn() -> Shared) -> std::io::Result<Workers> {
        let count = count.max(1);
        let mut queues = Vec::with_capacity(count);
        let mut inboxes = Vec::with_capacity(count);
        for _ in 0..count {
            let (tx, rx) = mpsc::unbounded_channel();
            queues.push(tx);
            inboxes.push(rx);
        }
        let peers = Arc::new(Peers {
            open: (0..count).map(|_| AtomicUsize::new(0)).collect(),
            queues,
        });
        let mut handles = Vec::with_capacity(count);
        for (index, inbox) in inboxes.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_park(super::cork::flush_corked)
                .build()?;
            let worker = Worker {
                index,
                shared: Arc::new(shared()),
                peers: peers.clone(),
            };
            handles.push((runtime.handle().clone(), worker.shared.clone()));
            std::thread::Builder::new()
                .name(format!("xlb-l7-{index}"))
                .spawn(move || {
                    super::cork::flush_at_park();
                    runtime.block_on(worker.run(inbox))
                })?;
        }
        Ok(Workers {
            spread: Spread {
                peers,
                workers: handles.into(),
            },
        })
    }

    /// Every worker's runtime and state, for the HTTP/3 endpoints.
    pub fn spread(&self) -> &Spread {
        &self.spread
    }

    /// The client connections (TCP and QUIC) open on each worker.
    pub fn open(&self) -> Vec<usize> {
        let open = &self.spread.peers.open;
        open.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    /// Every worker accepts on `serving` from now on.
    pub fn serve(&self, serving: &[Serving]) {
        for q in &self.spread.peers.queues {
            let _ = q.send(Command::Serve(serving.to_vec()));
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for q in &self.spread.peers.queues {
            let _ = q.send(Command::Stop);
        }
    }
}

struct Worker {
    index: usize,
    shared: Arc<Shared>,
    peers: Arc<Peers>,
}

impl Worker {
    async fn run(self, mut inbox: mpsc::UnboundedReceiver<Command>) {
        let me = Arc::new(self);
        let watchdog = tokio::spawn(super::cork::watchdog());
        let mut accepting: Vec<JoinHandle<()>> = Vec::new();
        while let Some(command) = inbox.recv().await {
            match command {
                Command::Serve(serving) => {
                    for task in accepting.drain(..) {
                        task.abort();
                    }
                    for s in serving {
                        match s.listener.try_clone().and_then(TcpListener::from_std) {
                            Ok(l) => accepting.push(tokio::spawn(me.clone().accept_loop(l, s.fe))),
                            Err(e) => error!(
                                frontend = %s.fe.name, worker = me.index,
                                "cannot accept on the frontend's socket: {e}"
                            ),
                        }
                    }
                }
                Command::Adopt(placed, stream, client, fe) => match TcpStream::from_std(stream) {
                    Ok(stream) => me.spawn_serve(placed, stream, client, fe),
                    Err(e) => warn!(%client, "taking over a connection: {e}"),
                },
                Command::Stop => break,
            }
        }
        for task in accepting {
            task.abort();
        }
        watchdog.abort();
    }

    /// Accepts until the task is aborted; each connection gets a task of
    /// its own, which outlives this loop (a reload keeps them).
    async fn accept_loop(self: Arc<Self>, listener: TcpListener, fe: Arc<Frontend>) {
        loop {
            let (stream, client) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(frontend = %fe.name, "accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let placed = self.peers.place(self.index);
            if placed.worker == self.index {
                self.spawn_serve(placed, stream, client, fe.clone());
                continue;
            }
            let queue = &self.peers.queues[placed.worker];
            match stream.into_std() {
                Ok(std_stream) => {
                    let _ = queue.send(Command::Adopt(placed, std_stream, client, fe.clone()));
                }
                Err(e) => warn!(%client, "handing a connection over: {e}"),
            }
        }
    }

    fn spawn_serve(
        &self,
        placed: Placed,
        stream: TcpStream,
        client: SocketAddr,
        fe: Arc<Frontend>,
    ) {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            listener::serve(stream, client, fe, shared).await;
            drop(placed);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize) -> Arc<Peers> {
        Arc::new(Peers {
            open: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            queues: (0..n).map(|_| mpsc::unbounded_channel().0).collect(),
        })
    }

    fn open(p: &Peers) -> Vec<usize> {
        p.open.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    #[test]
    fn a_burst_accepted_by_one_worker_spreads_evenly() {
        let p = peers(4);
        // Worker 2 wins every accept of a burst of 64.
        let placed: Vec<Placed> = (0..64).map(|_| p.place(2)).collect();
        let counts = open(&p);
        assert_eq!(counts, vec![16, 16, 16, 16]);
        drop(placed);
        assert_eq!(open(&p), vec![0, 0, 0, 0], "closed connections uncount");
    }

    #[test]
    fn a_worker_hands_over_when_another_has_fewer() {
        let p = peers(2);
        let first = p.place(1);
        assert_eq!(first.worker, 1, "all equal: kept");
        let second = p.place(1);
        assert_eq!(second.worker, 0, "one ahead of worker 0: handed over");
        let third = p.place(0);
        assert_eq!(third.worker, 0, "level with worker 1: kept");
        assert_eq!(open(&p), vec![2, 1]);
    }

    #[test]
    fn least_takes_the_least_loaded_worker() {
        let p = peers(3);
        let placed: Vec<Placed> = (0..5).map(|_| p.least_loaded()).collect();
        let workers: Vec<usize> = placed.iter().map(|c| c.worker).collect();
        assert_eq!(workers, [0, 1, 2, 0, 1]);
        drop(placed);
        assert_eq!(open(&p), vec![0, 0, 0]);
    }
}
