//! Where the `kube-apiserver` and `etcd` binaries are.
//!
//! `kube-apiserver` is built once from Debian sources by `scripts/kube-apiserver.sh` into a cache
//! folder; the test kit never builds it itself (it takes minutes), it only says how to.
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Overrides the path of the `kube-apiserver` binary.
pub const APISERVER_ENV: &str = "PODID_KUBE_APISERVER";
/// Overrides the cache folder (`${XDG_CACHE_HOME:-$HOME/.cache}/podid` by default).
pub const CACHE_ENV: &str = "PODID_CACHE";

/// The two programs a local cluster runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The `kube-apiserver` v1.20 binary.
    pub kube_apiserver: PathBuf,
    /// The `etcd` binary.
    pub etcd: PathBuf,
}

impl Binaries {
    /// Finds both binaries: `$PODID_KUBE_APISERVER`, else `$PODID_CACHE/bin/kube-apiserver`;
    /// `etcd` on `PATH`.
    pub fn locate() -> Result<Self> {
        let kube_apiserver = match std::env::var_os(APISERVER_ENV) {
            Some(path) => PathBuf::from(path),
            None => cache_dir().join("bin/kube-apiserver"),
        };
        if !is_executable(&kube_apiserver) {
            return Err(Error::ApiServerMissing { path: kube_apiserver });
        }
        let etcd = find_on_path("etcd").ok_or(Error::EtcdMissing)?;
        Ok(Self { kube_apiserver, etcd })
    }
}

/// `$PODID_CACHE`, else `${XDG_CACHE_HOME:-$HOME/.cache}/podid` (as `scripts/kube-apiserver.sh`).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("podid")
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
