//! The runtime API's changes to the server registry. Pure: the daemon
//! applies the result to both tiers (maps sync, then the snapshot the L7
//! tier follows) and starts or stops health checks.

use std::net::SocketAddr;

use super::{
    command::{Command, ServerRef},
    show::status_name,
};
use crate::{
    config::{Config, DEFAULT_WEIGHT, Forward, Server},
    registry::{Admin, Registry},
};

/// What a change did to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The effective state is the same: nothing to publish.
    Unchanged,
    Changed,
    /// A new server with this id: start its health check.
    Added(u32),
    /// The server with this id is gone: stop its health check.
    Removed(u32),
}

/// Apply a changing command (`set`, `add`, `del`) to `registry`; the
/// answer line on success.
pub fn apply(
    command: &Command,
    registry: &mut Registry,
    config: &Config,
) -> Result<(Change, String), String> {
    match command {
        Command::SetState(target, admin) => {
            let id = find(registry, target)?;
            let changed = registry.set_admin(id, *admin);
            Ok((changed_if(changed), describe(registry, id)))
        }
        Command::SetWeight(target, weight) => {
            let id = find(registry, target)?;
            let changed = registry.set_weight(id, *weight);
            Ok((changed_if(changed), describe(registry, id)))
        }
        Command::AddServer {
            target,
            address,
            weight,
        } => {
            if config.backend(&target.backend).is_none() {
                return Err(format!("no backend {}", target.backend));
            }
            if registry.find(&target.backend, &target.server).is_some() {
                return Err(format!("server {target} exists"));
            }
            check_family(config, &target.backend, *address)?;
            let server = Server {
                name: target.server.clone(),
                address: *address,
                weight: weight.unwrap_or(DEFAULT_WEIGHT),
                quic_server_id: None,
            };
            let id = registry
                .add(&target.backend, &server)
                .map_err(|e| e.to_string())?;
            Ok((Change::Added(id), describe(registry, id)))
        }
        Command::DelServer(target) => {
            let id = find(registry, target)?;
            registry.remove(id);
            Ok((Change::Removed(id), format!("{target}: removed")))
        }
        other => Err(format!("{other:?} changes nothing")),
    }
}

fn changed_if(changed: bool) -> Change {
    if changed {
        Change::Changed
    } else {
        Change::Unchanged
    }
}

fn find(registry: &Registry, target: &ServerRef) -> Result<u32, String> {
    registry
        .find(&target.backend, &target.server)
        .map(|s| s.id)
        .ok_or_else(|| format!("no server {target}"))
}

/// `web/web2: MAINT weight 100 admin maint`.
fn describe(registry: &Registry, id: u32) -> String {
    match registry.get(id) {
        Some(s) => format!(
            "{}: {} weight {} admin {}",
            s.key,
            status_name(s.state()),
            s.weight,
            admin_name(s.admin)
        ),
        None => format!("server id {id} is gone"),
    }
}

pub fn admin_name(admin: Admin) -> &'static str {
    match admin {
        Admin::Ready => "ready",
        Admin::Drain => "drain",
        Admin::Maint => "maint",
    }
}

/// The rules `xlb check` applies to configured servers: NAT needs the
/// VIP's family; DSR may send an IPv4 VIP to IPv6 servers, not the reverse.
fn check_family(config: &Config, backend: &str, address: SocketAddr) -> Result<(), String> {
    for l4 in config.l4.iter().filter(|l| l.backend == backend) {
        let same = l4.vip.is_ipv4() == address.is_ipv4();
        let ok = match l4.forward {
            Forward::Nat => same,
            Forward::Dsr => same || address.is_ipv6(),
        };
        if !ok {
            return Err(format!(
                "{address} cannot serve VIP {} ({}) of [[l4]] {}",
                l4.vip,
                match l4.forward {
                    Forward::Nat => "NAT needs the VIP's address family",
                    Forward::Dsr => "DSR cannot send an IPv6 VIP to an IPv4 server",
                },
                l4.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::command::parse, config};

    const CONFIG: &str = r#"
[[xdp]]
interface = "eth0"

[[backend]]
name = "web"
health = { check = "none" }
  [[backend.server]]
  name = "web1"
  address = "198.18.1.11:8080"
  [[backend.server]]
  name = "web2"
  address = "198.18.1.12:8080"

[[l4]]
name = "web-l4"
vip = "198.18.0.100:80"
backend = "web"
forward = "nat"
"#;

    fn setup() -> (Config, Registry) {
        let config = config::parse(CONFIG, "t.toml").unwrap();
        let registry = Registry::from_config(&config).unwrap();
        (config, registry)
    }

    fn run(line: &str, registry: &mut Registry, config: &Config) -> Result<Change, String> {
        apply(&parse(line).unwrap(), registry, config).map(|(c, _)| c)
    }

    #[test]
    fn state_and_weight_changes_report_whether_anything_changed() {
        let (config, mut r) = setup();
        let c = run("set server web/web2 state maint", &mut r, &config);
        assert_eq!(c, Ok(Change::Changed));
        assert_eq!(r.find("web", "web2").unwrap().admin, Admin::Maint);
        let c = run("set server web/web2 state maint", &mut r, &config);
        assert_eq!(c, Ok(Change::Unchanged));
        let c = run("set server web/web1 weight 0", &mut r, &config);
        assert_eq!(c, Ok(Change::Changed));
        assert!(!r.find("web", "web1").unwrap().is_live());
        assert!(run("set server web/web9 weight 1", &mut r, &config).is_err());
        assert!(run("set server db/web1 weight 1", &mut r, &config).is_err());
    }

    #[test]
    fn add_and_del_keep_names_unique_and_families_right() {
        let (config, mut r) = setup();
        let Ok(Change::Added(id)) = run("add server web/web3 198.18.1.13:8080", &mut r, &config)
        else {
            panic!("add failed");
        };
        assert_eq!(r.get(id).unwrap().weight, DEFAULT_WEIGHT);
        assert!(run("add server web/web3 198.18.1.13:8080", &mut r, &config).is_err());
        assert!(run("add server db/x 198.18.1.13:8080", &mut r, &config).is_err());
        let v6 = run("add server web/v6 [2001:db8:1::13]:8080", &mut r, &config);
        assert!(v6.unwrap_err().contains("NAT"));
        assert_eq!(
            run("del server web/web3", &mut r, &config),
            Ok(Change::Removed(id))
        );
        assert!(r.find("web", "web3").is_none());
        assert!(run("del server web/web3", &mut r, &config).is_err());
    }
}
