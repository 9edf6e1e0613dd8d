//! Child processes: bounded one-shot commands and long-running children that
//! are killed (their whole process group) when their guard drops.

use std::{
    io::{BufRead, BufReader, Read},
    os::unix::process::CommandExt,
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// Process groups of the live children of one [`crate::Lab`], so the lab can
/// kill them before it deletes its namespaces even if a guard outlives it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Registry(Arc<Mutex<Vec<i32>>>);

impl Registry {
    fn add(&self, pgid: i32) {
        lock(&self.0).push(pgid);
    }

    fn remove(&self, pgid: i32) {
        lock(&self.0).retain(|&p| p != pgid);
    }

    /// SIGKILL every registered group. The leaders stay unreaped (zombies)
    /// until their guard waits for them, so their ids cannot be reused.
    pub(crate) fn kill_all(&self) {
        for &pgid in lock(&self.0).iter() {
            kill_group(pgid);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn kill_group(pgid: i32) {
    if pgid > 0 {
        // SAFETY: plain syscall; a negative pid addresses the process group.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Starts `cmd` as the leader of its own process group, stdin from
/// `/dev/null`, stdout and stderr piped; its description and the child.
fn spawn_group(cmd: &mut Command) -> Result<(String, Child)> {
    let what = describe(cmd);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("spawning `{what}`"))?;
    Ok((what, child))
}

/// Runs `cmd` to completion in its own process group, capturing output.
/// After `timeout` the group is killed and an error returned. The exit
/// status is not checked.
pub(crate) fn output_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let (what, mut child) = spawn_group(cmd)?;
    let pgid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    for (i, pipe) in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .enumerate()
    {
        let tx = tx.clone();
        let mut pipe = pipe.expect("piped");
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send((i, buf));
        });
    }
    drop(tx);

    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            kill_group(pgid);
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{what}` timed out after {timeout:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        // A background grandchild may keep a pipe open; do not wait forever.
        let wait = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        match rx.recv_timeout(wait) {
            Ok((0, b)) => stdout = b,
            Ok((_, b)) => stderr = b,
            Err(_) => {
                kill_group(pgid);
                bail!("`{what}` exited but a background process keeps its output open");
            }
        }
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Like [`output_timeout`] but a non-zero exit is an error carrying stderr.
pub(crate) fn run_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let what = describe(cmd);
    let out = output_timeout(cmd, timeout)?;
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

type Lines = Arc<Mutex<Vec<String>>>;

/// A long-running child (started with [`crate::Namespace::spawn`]). It leads
/// its own process group; dropping the guard SIGKILLs the group and reaps
/// the child. Its stdout and stderr are drained continuously (so it never
/// blocks on a full pipe) and kept as lines.
#[derive(Debug)]
pub struct Process {
    child: Child,
    what: String,
    stdout: Lines,
    stderr: Lines,
    registry: Registry,
    reaped: bool,
}

impl Process {
    pub(crate) fn spawn(mut cmd: Command, registry: &Registry) -> Result<Process> {
        let (what, mut child) = spawn_group(&mut cmd)?;
        registry.add(child.id() as i32);
        let stdout = Lines::default();
        let stderr = Lines::default();
        drain(child.stdout.take().expect("piped"), stdout.clone());
        drain(child.stderr.take().expect("piped"), stderr.clone());
        Ok(Process {
            child,
            what,
            stdout,
            stderr,
            registry: registry.clone(),
            reaped: false,
        })
    }

    /// The child's pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stdout lines printed so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        lock(&self.stdout).clone()
    }

    /// The stderr lines printed so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        lock(&self.stderr).clone()
    }

    /// Whether the child has not exited yet.
    pub fn is_running(&mut self) -> bool {
        self.poll_exit().is_none()
    }

    /// Reaps the child if it has exited. Its group (any leftover
    /// descendants) is killed right away, while the id is still reserved.
    fn poll_exit(&mut self) -> Option<std::process::ExitStatus> {
        if self.reaped {
            return self.child.try_wait().ok().flatten();
        }
        let status = self.child.try_wait().ok().flatten()?;
        let pgid = self.child.id() as i32;
        kill_group(pgid);
        self.registry.remove(pgid);
        self.reaped = true;
        Some(status)
    }

    /// Waits until a stdout line starts with `prefix` and returns it. Fails
    /// if the child exits first or after `timeout`, quoting its stderr.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = lock(&self.stdout).iter().find(|l| l.starts_with(prefix)) {
                return Ok(line.clone());
            }
            if let Some(status) = self.poll_exit() {
                // Let the drain threads pick up the last output.
                thread::sleep(Duration::from_millis(50));
                if let Some(line) = lock(&self.stdout).iter().find(|l| l.starts_with(prefix)) {
                    return Ok(line.clone());
                }
                bail!(
                    "`{}` exited ({status}) before printing {prefix:?}; stderr: {}",
                    self.what,
                    self.stderr_lines().join("\n")
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "`{}` printed no {prefix:?} line within {timeout:?}; stdout: {:?}; stderr: {}",
                    self.what,
                    self.stdout_lines(),
                    self.stderr_lines().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the process group and reaps the child (idempotent).
    pub fn kill(&mut self) {
        if self.reaped {
            return;
        }
        let pgid = self.child.id() as i32;
        kill_group(pgid);
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.registry.remove(pgid);
        self.reaped = true;
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn drain(pipe: impl Read + Send + 'static, into: Lines) {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).to_owned();
                    lock(&into).push(line);
                }
            }
        }
    });
}

/// Locates a binary of the workspace named `name`: `$ENV` if set, else
/// next to the current executable (`target/<profile>/`), or one level up
/// when the executable is a test in `target/<profile>/deps/`. The error
/// names the places tried and `build`, the command that builds it.
pub(crate) fn workspace_binary(name: &str, env: &str, build: &str) -> Result<std::path::PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(p.into());
    }
    let exe = std::env::current_exe()?;
    let mut tried = Vec::new();
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
        tried.push(candidate);
    }
    bail!("{name} not found (tried {tried:?}); build it with `{build}` or set {env}")
}
