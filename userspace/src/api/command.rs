//! The runtime API's command language: one command per line, words
//! separated by blanks, HAProxy-style. Parsing never panics; every
//! refusal is a message for an `error:` answer.

use std::net::SocketAddr;

use crate::{config::MAX_WEIGHT, registry::Admin};

/// Longest command line the server reads (bytes, without the newline).
pub const MAX_LINE: usize = 1024;

pub const HELP: &str = "\
help                                          this list
show info                                     version, pid, uptime, config, counts
show stat                                     servers as CSV (first line: # column names)
show servers state                            servers, one line each (first line: # column names)
set server BACKEND/SERVER state ready|drain|maint
set server BACKEND/SERVER weight N            0 drains (keeps established flows)
add server BACKEND/SERVER ADDR:PORT [weight N]
del server BACKEND/SERVER
reload                                        re-read the config file (as SIGHUP)";

/// `BACKEND/SERVER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRef {
    pub backend: String,
    pub server: String,
}

impl std::fmt::Display for ServerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.backend, self.server)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    ShowInfo,
    ShowStat,
    ShowServersState,
    SetState(ServerRef, Admin),
    SetWeight(ServerRef, u32),
    AddServer {
        target: ServerRef,
        address: SocketAddr,
        weight: Option<u32>,
    },
    DelServer(ServerRef),
    Reload,
}

/// Parse one line (without its newline). The server skips blank lines;
/// here they are refused like any other bad input.
pub fn parse(line: &str) -> Result<Command, String> {
    if line.len() > MAX_LINE {
        return Err(format!("command longer than {MAX_LINE} bytes"));
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [] => Err("empty command; try help".into()),
        ["help"] => Ok(Command::Help),
        ["show", "info"] => Ok(Command::ShowInfo),
        ["show", "stat"] => Ok(Command::ShowStat),
        ["show", "servers", "state"] => Ok(Command::ShowServersState),
        ["reload"] => Ok(Command::Reload),
        ["set", "server", target, "state", state] => {
            let admin = match *state {
                "ready" => Admin::Ready,
                "drain" => Admin::Drain,
                "maint" => Admin::Maint,
                other => return Err(format!("unknown state {other:?}: ready, drain or maint")),
            };
            Ok(Command::SetState(server_ref(target)?, admin))
        }
        ["set", "server", target, "weight", n] => {
            Ok(Command::SetWeight(server_ref(target)?, weight(n)?))
        }
        ["set", "server", _, ..] => {
            Err("usage: set server BACKEND/SERVER state ready|drain|maint | weight N".into())
        }
        ["add", "server", target, address, rest @ ..] => {
            let weight = match rest {
                [] => None,
                ["weight", n] => Some(weight(n)?),
                _ => return Err("usage: add server BACKEND/SERVER ADDR:PORT [weight N]".into()),
            };
            Ok(Command::AddServer {
                target: server_ref(target)?,
                address: socket_addr(address)?,
                weight,
            })
        }
        ["add", "server", ..] => {
            Err("usage: add server BACKEND/SERVER ADDR:PORT [weight N]".into())
        }
        ["del", "server", target] => Ok(Command::DelServer(server_ref(target)?)),
        ["del", "server", ..] => Err("usage: del server BACKEND/SERVER".into()),
        _ => Err(format!(
            "unknown command {:?}; try help",
            printable(&words.join(" "))
        )),
    }
}

fn server_ref(word: &str) -> Result<ServerRef, String> {
    let Some((backend, server)) = word.split_once('/') else {
        return Err(format!(
            "expected BACKEND/SERVER, got {:?}",
            printable(word)
        ));
    };
    for name in [backend, server] {
        if !valid_name(name) {
            return Err(format!(
                "bad name {:?}: letters, digits and - _ . : only",
                printable(name)
            ));
        }
    }
    Ok(ServerRef {
        backend: backend.to_string(),
        server: server.to_string(),
    })
}

/// The config's rule for backend and server names.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

fn weight(word: &str) -> Result<u32, String> {
    match word.parse::<u32>() {
        Ok(w) if w <= MAX_WEIGHT => Ok(w),
        _ => Err(format!(
            "weight must be an integer 0..={MAX_WEIGHT}, got {:?}",
            printable(word)
        )),
    }
}

fn socket_addr(word: &str) -> Result<SocketAddr, String> {
    match word.parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(a),
        Ok(_) => Err("the server port must not be 0".into()),
        Err(_) => Err(format!(
            "expected ADDR:PORT (IPv6 as [ADDR]:PORT), got {:?}",
            printable(word)
        )),
    }
}

/// Echoed input, shortened so an answer stays one short line.
fn printable(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web2() -> ServerRef {
        ServerRef {
            backend: "web".into(),
            server: "web2".into(),
        }
    }

    #[test]
    fn parses_every_command() {
        assert_eq!(parse("help"), Ok(Command::Help));
        assert_eq!(parse("  show   info "), Ok(Command::ShowInfo));
        assert_eq!(parse("show stat"), Ok(Command::ShowStat));
        assert_eq!(parse("show servers state"), Ok(Command::ShowServersState));
        assert_eq!(parse("reload"), Ok(Command::Reload));
        assert_eq!(
            parse("set server web/web2 state maint"),
            Ok(Command::SetState(web2(), Admin::Maint))
        );
        assert_eq!(
            parse("set server web/web2 state ready"),
            Ok(Command::SetState(web2(), Admin::Ready))
        );
        assert_eq!(
            parse("set server web/web2 weight 0"),
            Ok(Command::SetWeight(web2(), 0))
        );
        assert_eq!(
            parse("add server web/web2 198.18.1.12:8080 weight 7"),
            Ok(Command::AddServer {
                target: web2(),
                address: "198.18.1.12:8080".parse().unwrap(),
                weight: Some(7),
            })
        );
        assert_eq!(
            parse("add server web/web2 [2001:db8:1::12]:80"),
            Ok(Command::AddServer {
                target: web2(),
                address: "[2001:db8:1::12]:80".parse().unwrap(),
                weight: None,
            })
        );
        assert_eq!(parse("del server web/web2"), Ok(Command::DelServer(web2())));
    }

    #[test]
    fn refuses_bad_input_with_a_reason() {
        for bad in [
            "",
            "   ",
            "show",
            "show stats",
            "set server web state maint",
            "set server web/ state maint",
            "set server /web2 state maint",
            "set server web/we b2 state maint",
            "set server web/web2 state up",
            "set server web/web2 weight -1",
            "set server web/web2 weight 1001",
            "set server web/web2 weight x",
            "set server web/web2",
            "set server web/w\u{e9}b2 weight 1",
            "add server web/web4",
            "add server web/web4 198.18.1.14",
            "add server web/web4 198.18.1.14:0",
            "add server web/web4 198.18.1.14:80 weight",
            "add server web/web4 198.18.1.14:80 bogus 1",
            "del server",
            "del server web/web2 now",
            "SHOW STAT",
            "reload now",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(!err.is_empty() && !err.contains('\n'), "{bad:?}: {err:?}");
        }
        assert!(parse(&"x".repeat(MAX_LINE + 1)).is_err());
    }
}
