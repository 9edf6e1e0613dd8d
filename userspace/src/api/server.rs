//! The runtime API socket: a unix stream socket at `[global] api_socket`,
//! one command per line, one answer per command, each answer ended by an
//! empty line (as HAProxy's stats socket in interactive use). Commands are
//! parsed here; everything else is answered by the daemon's loop, the only
//! owner of the registry and the maps.

use std::{
    io::ErrorKind,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{Semaphore, mpsc, oneshot},
    task::JoinHandle,
};
use tracing::{debug, info, warn};

use super::command::{self, Command, HELP, MAX_LINE};

/// Clients served at once; more are answered `error:` and closed.
const MAX_CLIENTS: usize = 32;
/// A client that sends nothing this long is closed.
const IDLE: Duration = Duration::from_secs(300);

/// A command for the daemon's loop and where its answer goes.
pub struct Request {
    pub command: Command,
    pub reply: oneshot::Sender<String>,
}

/// The bound socket; removes its file on drop.
pub struct ApiSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
}

impl Drop for ApiSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path`: creates its directory, replaces a stale socket file, and
/// refuses when a live daemon answers there (before this one touches any
/// pinned map or interface).
pub fn bind(path: &Path) -> anyhow::Result<ApiSocket> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                bail!(
                    "another xlb answers on the API socket {} (stop it, or set another [global] api_socket)",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale API socket {}", path.display()))?;
        }
        Ok(_) => bail!(
            "api_socket {} exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("api_socket {}", path.display())),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding the API socket {}", path.display()))?;
    // The API changes what the data path does: owner and group only.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok(ApiSocket {
        listener: Some(listener),
        path: path.to_path_buf(),
    })
}

/// Serves clients until the task is aborted; the socket file goes with it.
pub fn spawn(mut socket: ApiSocket, requests: mpsc::Sender<Request>) -> JoinHandle<()> {
    let listener = socket.listener.take();
    tokio::spawn(async move {
        let Some(listener) = listener else { return };
        info!(path = %socket.path.display(), "runtime API listening");
        let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
        loop {
            let mut stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!("API accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                let _ = stream.write_all(b"error: too many API clients\n\n").await;
                continue;
            };
            let requests = requests.clone();
            tokio::spawn(async move {
                if let Err(e) = client(stream, requests).await {
                    debug!("API client: {e}");
                }
                drop(permit);
            });
        }
    })
}

async fn client(stream: UnixStream, requests: mpsc::Sender<Request>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        // One byte past the limit tells a long line from a full one.
        let limited = (&mut read).take(MAX_LINE as u64 + 2);
        let n = match tokio::time::timeout(IDLE, read_line(limited, &mut line)).await {
            Ok(n) => n?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        let complete = line.ends_with(b"\n");
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        if !complete && line.len() > MAX_LINE {
            // Cannot find the next command's start: answer and hang up.
            let answer = format!("error: command longer than {MAX_LINE} bytes\n\n");
            write.write_all(answer.as_bytes()).await?;
            return Ok(());
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            if complete {
                continue;
            }
            return Ok(());
        }
        let mut answer = match std::str::from_utf8(&line) {
            Ok(text) => answer(text, &requests).await,
            Err(_) => "error: the command is not UTF-8".to_string(),
        };
        // An empty line ends the answer, so none may appear inside it.
        answer.retain(|c| c != '\r');
        while answer.contains("\n\n") {
            answer = answer.replace("\n\n", "\n");
        }
        let answer = format!("{}\n\n", answer.trim_end_matches('\n'));
        write.write_all(answer.as_bytes()).await?;
    }
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    mut r: R,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    r.read_until(b'\n', buf).await
}

async fn answer(text: &str, requests: &mpsc::Sender<Request>) -> String {
    let command = match command::parse(text) {
        Ok(c) => c,
        Err(e) => return format!("error: {e}"),
    };
    if command == Command::Help {
        return HELP.to_string();
    }
    let (reply, answer) = oneshot::channel();
    if requests.send(Request { command, reply }).await.is_err() {
        return "error: xlb is stopping".to_string();
    }
    answer
        .await
        .unwrap_or_else(|_| "error: xlb is stopping".to_string())
}
