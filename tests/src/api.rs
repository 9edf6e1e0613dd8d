//! Helpers for the runtime API and metrics tests: `xlb ctl` against a
//! daemon's socket (a path under the temp dir, reachable from every
//! namespace), raw socket exchanges for hostile input, `show stat`
//! parsing, and a strict check of the Prometheus text format.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::{process::output_timeout, xlb_daemon::xlb_path};

/// What `xlb ctl` printed and how it exited.
#[derive(Debug, Clone)]
pub struct CtlAnswer {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// `xlb ctl --socket SOCKET WORDS...` (the command split on blanks).
pub fn ctl(socket: &Path, command: &str) -> Result<CtlAnswer> {
    let out = output_timeout(
        Command::new(xlb_path()?)
            .arg("ctl")
            .arg("--socket")
            .arg(socket)
            .args(command.split_whitespace()),
        Duration::from_secs(30),
    )?;
    Ok(CtlAnswer {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// [`ctl`] that must succeed; its stdout.
pub fn ctl_ok(socket: &Path, command: &str) -> Result<String> {
    let a = ctl(socket, command)?;
    if !a.success {
        bail!(
            "xlb ctl {command:?} failed: {}{}",
            a.stdout.trim(),
            a.stderr.trim()
        );
    }
    Ok(a.stdout)
}

/// Writes `bytes` on a fresh connection, half-closes, and reads the whole
/// answer (the server closes at EOF), bounded by a 10 s timeout.
pub fn raw_exchange(socket: &Path, bytes: &[u8]) -> Result<String> {
    let mut s = UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    // The server may hang up before reading everything (an over-long line).
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `show stat` as rows of column -> value, by the `# ` header line.
pub fn stat_rows(csv: &str) -> Result<Vec<BTreeMap<String, String>>> {
    let mut lines = csv.lines();
    let header = lines
        .next()
        .and_then(|l| l.strip_prefix("# "))
        .with_context(|| format!("no '# ' header line in {csv:?}"))?;
    let columns: Vec<&str> = header.split(',').collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            if cells.len() != columns.len() {
                bail!("row {l:?} has {} cells for {columns:?}", cells.len());
            }
            Ok(columns
                .iter()
                .zip(cells)
                .map(|(c, v)| (c.to_string(), v.to_string()))
                .collect())
        })
        .collect()
}

/// server name -> `status` column of `show stat` on `socket`.
pub fn statuses(socket: &Path) -> Result<BTreeMap<String, String>> {
    let rows = stat_rows(&ctl_ok(socket, "show stat")?)?;
    Ok(rows
        .into_iter()
        .map(|r| (r["server"].clone(), r["status"].clone()))
        .collect())
}

/// Checks every line of a Prometheus/OpenMetrics text exposition: `# HELP`,
/// `# TYPE`, `# UNIT` or `# EOF` comments, else `name{label="value",...}
/// number` with a valid metric name, quoted label values and a numeric
/// value. Returns the number of samples.
pub fn check_exposition(text: &str) -> Result<usize> {
    let mut samples = 0;
    for (i, line) in text.lines().enumerate() {
        let bad = |why: &str| anyhow::anyhow!("line {}: {why}: {line:?}", i + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let kind = rest.split(' ').next().unwrap_or("");
            if !["HELP", "TYPE", "UNIT", "EOF"].contains(&kind) {
                return Err(bad("unknown comment"));
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| bad("no value"))?;
        if value.parse::<f64>().is_err() && !["+Inf", "-Inf", "NaN"].contains(&value) {
            return Err(bad("value is not a number"));
        }
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (
                n,
                Some(
                    rest.strip_suffix('}')
                        .ok_or_else(|| bad("unclosed labels"))?,
                ),
            ),
            None => (series, None),
        };
        let valid_name = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        if !valid_name {
            return Err(bad("bad metric name"));
        }
        if let Some(labels) = labels {
            parse_labels(labels).map_err(|e| bad(&e))?;
        }
        samples += 1;
    }
    Ok(samples)
}

fn parse_labels(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").ok_or("label without =\"")?;
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, c)) => value.push(c),
                    None => return Err("dangling escape".into()),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        out.push((key.to_string(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Ok(out)
}

/// The value of the sample `name` whose labels include all of `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (n, l) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                return None;
            }
            let have = parse_labels(l.strip_suffix('}')?).ok()?;
            let all = labels
                .iter()
                .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v));
            if all { value.parse().ok() } else { None }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_checker_accepts_good_and_rejects_bad_lines() {
        let good =
            "# HELP a_total x\n# TYPE a counter\na_total{x=\"1\",y=\"q\\\"\"} 3\nb 1.5\n# EOF\n";
        assert_eq!(check_exposition(good).unwrap(), 2);
        assert_eq!(sample(good, "a_total", &[("x", "1")]), Some(3.0));
        for bad in [
            "a{x=1} 2",
            "a 1 2 x",
            "1a 3",
            "a{x=\"1\" 2",
            "# FOO x",
            "a{x=\"1\"} z",
        ] {
            assert!(check_exposition(bad).is_err(), "{bad}");
        }
    }
}
