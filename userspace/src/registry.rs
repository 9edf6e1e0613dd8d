//! The control plane's view of every server: stable ids, configured weight,
//! admin state and health. The effective state computed here is what both
//! tiers obey; `dataplane::Maps` copies it into the shared maps.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
};

use xlb_common::{BACKEND_DOWN, BACKEND_DRAIN, BACKEND_MAINT, BACKEND_UP, MAX_BACKENDS};

use crate::{
    config::{Config, Server},
    dataplane::maglev::RingMember,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    Ready,
    Drain,
    Maint,
}

#[derive(Debug, Clone)]
pub struct ServerEntry {
    pub id: u32,
    pub backend: String,
    pub name: String,
    /// "backend/server": the stable name Maglev hashes, equal on every node.
    pub key: String,
    pub address: SocketAddr,
    pub weight: u32,
    pub quic_server_id: Option<u32>,
    pub admin: Admin,
    pub healthy: bool,
}

impl ServerEntry {
    /// `BACKEND_*` as the data path sees it.
    pub fn state(&self) -> u8 {
        match (self.admin, self.healthy) {
            (Admin::Maint, _) => BACKEND_MAINT,
            (_, false) => BACKEND_DOWN,
            (Admin::Drain, true) => BACKEND_DRAIN,
            (Admin::Ready, true) if self.weight == 0 => BACKEND_DRAIN,
            (Admin::Ready, true) => BACKEND_UP,
        }
    }

    /// Takes new flows and requests.
    pub fn is_live(&self) -> bool {
        self.state() == BACKEND_UP
    }

    /// The server as a Maglev table member (the same for both tiers).
    pub fn ring_member(&self) -> RingMember<'_> {
        RingMember {
            id: self.id,
            key: &self.key,
            weight: self.weight,
            live: self.is_live(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Registry {
    servers: BTreeMap<u32, ServerEntry>,
    next_id: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("too many servers: at most {MAX_BACKENDS}")]
    Full,
}

impl Registry {
    /// Servers start healthy (as in HAProxy) so a fresh start serves at once;
    /// the checker takes them down after `fall` failed checks.
    pub fn from_config(config: &Config) -> Result<Self, RegistryError> {
        let mut registry = Registry::default();
        for pool in &config.backend {
            for server in &pool.server {
                registry.add(&pool.name, server)?;
            }
        }
        Ok(registry)
    }

    /// Ids are handed out in turn (not lowest-free), so an id freed by a
    /// removed server is not reused while flows to it may still linger in
    /// the connection table.
    pub fn add(&mut self, backend: &str, server: &Server) -> Result<u32, RegistryError> {
        let id = (0..MAX_BACKENDS)
            .map(|i| (self.next_id + i) % MAX_BACKENDS)
            .find(|id| !self.servers.contains_key(id))
            .ok_or(RegistryError::Full)?;
        self.next_id = (id + 1) % MAX_BACKENDS;
        self.servers.insert(
            id,
            ServerEntry {
                id,
                backend: backend.to_string(),
                name: server.name.clone(),
                key: format!("{backend}/{}", server.name),
                address: server.address,
                weight: server.weight,
                quic_server_id: server.quic_server_id,
                admin: Admin::Ready,
                healthy: true,
            },
        );
        Ok(id)
    }

    pub fn get(&self, id: u32) -> Option<&ServerEntry> {
        self.servers.get(&id)
    }

    pub fn find(&self, backend: &str, name: &str) -> Option<&ServerEntry> {
        self.servers
            .values()
            .find(|s| s.backend == backend && s.name == name)
    }

    pub fn servers(&self) -> impl Iterator<Item = &ServerEntry> {
        self.servers.values()
    }

    pub fn in_backend<'a>(&'a self, backend: &'a str) -> impl Iterator<Item = &'a ServerEntry> {
        self.servers.values().filter(move |s| s.backend == backend)
    }

    /// Record a health verdict; returns true when the effective state changed.
    pub fn set_healthy(&mut self, id: u32, healthy: bool) -> bool {
        match self.servers.get_mut(&id) {
            Some(s) if s.healthy != healthy => {
                s.healthy = healthy;
                true
            }
            _ => false,
        }
    }

    pub fn set_admin(&mut self, id: u32, admin: Admin) -> bool {
        match self.servers.get_mut(&id) {
            Some(s) if s.admin != admin => {
                s.admin = admin;
                true
            }
            _ => false,
        }
    }

    /// Set a server's weight (0 drains); returns true when it changed.
    pub fn set_weight(&mut self, id: u32, weight: u32) -> bool {
        match self.servers.get_mut(&id) {
            Some(s) if s.weight != weight => {
                s.weight = weight;
                true
            }
            _ => false,
        }
    }

    /// Forget a server; its id is not handed out again soon (see `add`).
    pub fn remove(&mut self, id: u32) -> Option<ServerEntry> {
        self.servers.remove(&id)
    }

    /// Maglev members of one backend pool.
    pub fn ring_members<'a>(&'a self, backend: &'a str) -> Vec<RingMember<'a>> {
        self.in_backend(backend)
            .map(ServerEntry::ring_member)
            .collect()
    }
}

impl Registry {
    /// Apply a reloaded config: servers keep their id (and health) when
    /// their backend/name stays; new ones are added, gone ones removed.
    pub fn reconcile(&mut self, config: &Config) -> Result<(), RegistryError> {
        // Looked up by backend/name once per server: a reload of thousands
        // of servers stays linear.
        let existing: HashMap<(String, String), u32> = self
            .servers
            .values()
            .map(|s| ((s.backend.clone(), s.name.clone()), s.id))
            .collect();
        let mut keep = HashSet::new();
        for pool in &config.backend {
            for server in &pool.server {
                let id = match existing.get(&(pool.name.clone(), server.name.clone())) {
                    Some(&id) => id,
                    None => self.add(&pool.name, server)?,
                };
                if let Some(entry) = self.servers.get_mut(&id) {
                    entry.address = server.address;
                    entry.weight = server.weight;
                    entry.quic_server_id = server.quic_server_id;
                }
                keep.insert(id);
            }
        }
        self.servers.retain(|id, _| keep.contains(id));
        Ok(())
    }
}

/// A read-only copy of every server's state, published to the L7 tier
/// after each change so both tiers act on the same view.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub servers: Vec<ServerEntry>,
}

impl Snapshot {
    /// Servers of one backend pool, in config order of ids.
    pub fn in_backend<'a>(&'a self, backend: &'a str) -> impl Iterator<Item = &'a ServerEntry> {
        self.servers.iter().filter(move |s| s.backend == backend)
    }
}

impl Registry {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            servers: self.servers.values().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config with one backend `web` and servers `(name, last octet, weight)`.
    fn config(servers: &[(&str, u8, u32)]) -> Config {
        let mut text = String::from("[[backend]]\nname = \"web\"\n");
        for (name, octet, weight) in servers {
            text.push_str(&format!(
                "[[backend.server]]\nname = \"{name}\"\naddress = \"198.18.1.{octet}:80\"\nweight = {weight}\n"
            ));
        }
        crate::config::parse(&text, "test.toml").unwrap()
    }

    fn id(r: &Registry, name: &str) -> u32 {
        r.find("web", name).unwrap().id
    }

    #[test]
    fn a_reload_keeps_ids_and_state_of_servers_that_stay() {
        let mut r =
            Registry::from_config(&config(&[("a", 1, 1), ("b", 2, 1), ("c", 3, 1)])).unwrap();
        let (a, c) = (id(&r, "a"), id(&r, "c"));
        r.set_admin(c, Admin::Drain);
        // b goes, d comes, c moves and weighs more, order changes.
        r.reconcile(&config(&[("c", 9, 5), ("d", 4, 1), ("a", 1, 1)]))
            .unwrap();
        assert_eq!(r.servers().count(), 3);
        assert!(r.find("web", "b").is_none());
        assert_eq!(id(&r, "a"), a);
        let c_now = r.get(c).unwrap();
        assert_eq!((c_now.name.as_str(), c_now.weight), ("c", 5));
        assert_eq!(c_now.address, "198.18.1.9:80".parse().unwrap());
        assert_eq!(c_now.admin, Admin::Drain, "state kept across the reload");
        assert!(![a, c].contains(&id(&r, "d")), "a new server gets a new id");
    }
}
