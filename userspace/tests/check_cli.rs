//! The `xlb check` contract at the binary level: exit 0 for a valid config;
//! else exit 1, nothing on stdout and `FILE:LINE:COL: message` as the first
//! line of stderr. `xlb run` rejects a bad config the same way before it
//! touches anything (no BPF, no pins, no socket).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

const XLB: &str = env!("CARGO_BIN_EXE_xlb");

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `*.toml` files in `dir`, sorted; fails if there are none.
fn tomls(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.toml in {}", dir.display());
    files
}

fn xlb(args: &[&str], config: &Path) -> Output {
    Command::new(XLB)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("running {XLB}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `FILE:LINE:COL: message` line, taken apart.
#[derive(Debug)]
struct Located {
    line: u32,
    col: u32,
    message: String,
}

/// Parses `line` as `<file>:<line>:<col>: <message>`: `file` exactly as
/// given, line and column positive integers, a non-empty message.
fn parse_located(line: &str, file: &str) -> Result<Located, String> {
    let rest = line
        .strip_prefix(file)
        .and_then(|rest| rest.strip_prefix(':'))
        .ok_or_else(|| format!("{line:?} does not start with {file:?} and ':'"))?;
    let mut parts = rest.splitn(3, ':');
    let number = |part: Option<&str>, what: &str| -> Result<u32, String> {
        part.filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u32>().ok())
            .filter(|&n| n >= 1)
            .ok_or_else(|| format!("{line:?}: no {what} number after the file name"))
    };
    let line_no = number(parts.next(), "line")?;
    let col = number(parts.next(), "column")?;
    let message = parts
        .next()
        .and_then(|m| m.strip_prefix(' '))
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| format!("{line:?}: no message after LINE:COL: "))?;
    Ok(Located {
        line: line_no,
        col,
        message: message.to_owned(),
    })
}

/// Asserts the failure shape of `xlb check` and returns stderr's first
/// line, parsed.
fn assert_rejected(out: &Output, file: &str) -> (String, Located) {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{file}: expected exit 1, got {}; stderr: {stderr}",
        out.status
    );
    assert!(
        out.stdout.is_empty(),
        "{file}: stdout should be empty, got {:?}",
        text(&out.stdout)
    );
    let first = stderr.lines().next().unwrap_or_default().to_owned();
    let located = parse_located(&first, file).unwrap_or_else(|e| panic!("{file}: {e}"));
    (first, located)
}

#[test]
fn parse_located_takes_the_line_apart() {
    let l = parse_located("a/b.toml:9:3: unknown key `x`", "a/b.toml").unwrap();
    assert_eq!(
        (l.line, l.col, l.message.as_str()),
        (9, 3, "unknown key `x`")
    );
    // The message may hold colons itself.
    let l = parse_located("f.toml:1:1: cannot read: gone", "f.toml").unwrap();
    assert_eq!(l.message, "cannot read: gone");
    for bad in [
        "g.toml:9:3: wrong file",
        "f.toml:9: no column",
        "f.toml:x:3: not a number",
        "f.toml:0:3: line zero",
        "f.toml:9:3:",
        "f.toml:9:3:no space",
        "f.toml:9:3:  ",
        "",
    ] {
        assert!(parse_located(bad, "f.toml").is_err(), "{bad:?} parsed");
    }
}

#[test]
fn every_example_config_is_valid() {
    for config in tomls(&manifest_dir().join("../examples")) {
        let out = xlb(&["check"], &config);
        assert!(
            out.status.success(),
            "{}: expected exit 0, got {}; stderr: {}",
            config.display(),
            out.status,
            text(&out.stderr)
        );
    }
}

#[test]
fn every_bad_config_fails_with_file_line_col() {
    for config in tomls(&manifest_dir().join("tests/bad-configs")) {
        let file = config.to_str().expect("UTF-8 path");
        let out = xlb(&["check"], &config);
        assert_rejected(&out, file);
    }
}

#[test]
fn the_error_names_the_file_as_given() {
    let out = Command::new(XLB)
        .current_dir(manifest_dir())
        .args(["check", "--config", "tests/bad-configs/unknown-key.toml"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let (_, located) = assert_rejected(&out, "tests/bad-configs/unknown-key.toml");
    assert_eq!((located.line, located.col), (9, 3));
    assert!(
        located.message.contains("wieght"),
        "message should name the key: {:?}",
        located.message
    );
}

#[test]
fn a_missing_file_fails_clearly() {
    let config = manifest_dir().join("tests/bad-configs/does-not-exist.toml");
    let file = config.to_str().expect("UTF-8 path");
    let out = xlb(&["check"], &config);
    let (first, located) = assert_rejected(&out, file);
    assert_eq!((located.line, located.col), (1, 1), "{first}");
    let message = located.message.to_lowercase();
    assert!(
        message.contains("cannot read") && message.contains("no such file"),
        "unclear message: {first:?}"
    );
}

/// A scratch directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("xlb-check-cli-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// The names of the entries in the directory, sorted.
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn run_rejects_a_bad_config_before_touching_anything() {
    // Every bad config: `run` fails like `check`, with the same error.
    for config in tomls(&manifest_dir().join("tests/bad-configs")) {
        let file = config.to_str().expect("UTF-8 path");
        let (check_line, _) = assert_rejected(&xlb(&["check"], &config), file);
        let out = xlb(&["run"], &config);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{file}: `xlb run` should exit 1, got {}; stderr: {stderr}",
            out.status
        );
        assert!(out.stdout.is_empty(), "{file}: `xlb run` printed on stdout");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first == check_line || first.strip_prefix("xlb: ") == Some(check_line.as_str()),
            "{file}: `xlb run` said {first:?}, `xlb check` said {check_line:?}"
        );
    }

    // A config valid as TOML, wrong only in its last line, whose pin path
    // and API socket point into a scratch directory: nothing appears there.
    let scratch = Scratch::new("run");
    let pins = scratch.0.join("bpf/xlb");
    let socket = scratch.0.join("run/xlb.sock");
    let config = scratch.0.join("bad.toml");
    fs::write(
        &config,
        format!(
            "[global]\n\
             api_socket = {socket:?}\n\
             bpf_pin_path = {pins:?}\n\
             \n\
             [[xdp]]\n\
             interface = \"lo\"\n\
             mode = \"skb\"\n\
             \n\
             [[backend]]\n\
             name = \"web\"\n\
             health = {{ check = \"none\" }}\n\
             \x20 [[backend.server]]\n\
             \x20 name = \"web1\"\n\
             \x20 address = \"198.18.1.11:8080\"\n\
             \n\
             [[l4]]\n\
             name = \"web-l4\"\n\
             vip = \"198.18.0.100:80\"\n\
             backend = \"nope\"\n"
        ),
    )
    .unwrap();
    let file = config.to_str().expect("UTF-8 path");
    let (check_line, located) = assert_rejected(&xlb(&["check"], &config), file);
    assert_eq!(located.line, 19, "{check_line}");
    let out = xlb(&["run"], &config);
    assert_eq!(
        out.status.code(),
        Some(1),
        "`xlb run` should exit 1; stderr: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains(&check_line),
        "`xlb run` should report {check_line:?}; stderr: {}",
        text(&out.stderr)
    );
    assert_eq!(
        scratch.entries(),
        ["bad.toml"],
        "`xlb run` created files for a config it rejected"
    );
}
