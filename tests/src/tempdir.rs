//! [`TempDir`]: the one per-test directory of the lab (configs, API
//! socket, certificates, scratch files), removed on drop.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The config file name of [`TempDir::config_path`].
const CONFIG: &str = "xlb.toml";

/// A directory under the temp dir, `xlb-TAG-PID`, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    dir: PathBuf,
}

impl TempDir {
    /// Creates the directory (empty: a stale one of the same name is
    /// removed first).
    pub fn new(tag: &str) -> Result<TempDir> {
        let dir = std::env::temp_dir().join(format!("xlb-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(TempDir { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes `name` in the directory and returns its path. The contents
    /// go to a temporary name first, then are renamed into place, so a
    /// reader (a daemon reloading its config) never sees half a file.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> Result<PathBuf> {
        let p = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.new"));
        std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("renaming to {}", p.display()))?;
        Ok(p)
    }

    /// Writes the config file `xlb.toml` ([`TempDir::write`]) and returns
    /// its path.
    pub fn write_config(&self, text: &str) -> Result<PathBuf> {
        self.write(CONFIG, text)
    }

    /// Where [`TempDir::write_config`] writes.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG)
    }

    /// The API socket of [`TempDir::global_toml`]: `xlb.sock` in the
    /// directory.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("xlb.sock")
    }

    /// A `[global]` table with this directory's API socket and the BPF
    /// pin path `/sys/fs/bpf/xlb-TAG`, so parallel tests never share
    /// them. More `[global]` keys may follow it directly.
    pub fn global_toml(&self, tag: &str) -> String {
        format!(
            "[global]\napi_socket = \"{}\"\nbpf_pin_path = \"/sys/fs/bpf/xlb-{tag}\"\n",
            self.socket().display()
        )
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
