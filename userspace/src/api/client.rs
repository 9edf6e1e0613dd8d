//! `xlb ctl [--socket PATH] COMMAND...`: send one command line to the
//! runtime API and print the answer.

use std::{
    io::{BufRead, BufReader, ErrorKind, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, bail};

/// A reload re-reads the config and binds listeners: allow it time.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The answer to `words` joined by blanks, without its closing empty line.
pub fn send(socket: &Path, words: &[String]) -> anyhow::Result<String> {
    let line = words.join(" ");
    if line.contains('\n') {
        bail!("a command is one line");
    }
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        ErrorKind::NotFound => anyhow::anyhow!(
            "no API socket at {} (is xlb running? see --socket and [global] api_socket)",
            socket.display()
        ),
        ErrorKind::ConnectionRefused => anyhow::anyhow!(
            "nothing answers on {} (a stale socket: xlb is not running)",
            socket.display()
        ),
        ErrorKind::PermissionDenied => {
            anyhow::anyhow!("permission denied on {} (run as root?)", socket.display())
        }
        _ => anyhow::Error::new(e).context(format!("connecting to {}", socket.display())),
    })?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    stream
        .write_all(format!("{line}\n").as_bytes())
        .context("sending the command")?;
    let mut answer = String::new();
    let mut reader = BufReader::new(stream);
    loop {
        let mut l = String::new();
        let n = reader.read_line(&mut l).context("reading the answer")?;
        if n == 0 || l == "\n" {
            break;
        }
        answer.push_str(&l);
    }
    Ok(answer)
}

/// Prints the answer; Ok(false) when it is an `error:`.
pub fn run(socket: &Path, words: &[String]) -> anyhow::Result<bool> {
    let answer = send(socket, words)?;
    print!("{answer}");
    Ok(!answer.starts_with("error:"))
}
