//! Where the `kube-apiserver` and `etcd` binaries are.
//!
//! `kube-apiserver` is built once from Debian sources by `scripts/kubernetes.sh` into a cache
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

/// `$PODID_CACHE`, else `${XDG_CACHE_HOME:-$HOME/.cache}/podid` (as `scripts/kubernetes.sh`).
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

/// Overrides where the workspace's own binaries (`podid-forward`, `podid-node-init`, `podid`,
/// ...) are looked for.
pub const BIN_DIR_ENV: &str = "PODID_BIN_DIR";

/// A binary of this workspace: in `$PODID_BIN_DIR`, next to the running program, or one folder up
/// (a test binary runs from `target/<profile>/deps/`). `cargo build --workspace --bins` builds them.
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os(BIN_DIR_ENV).map(PathBuf::from).into_iter().collect();
    if let Some(exe_dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_owned)) {
        let up = exe_dir.parent().map(Path::to_owned);
        dirs.push(exe_dir);
        dirs.extend(up);
    }
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| Error::BinaryMissing { name: name.to_owned(), searched: dirs })
}

/// A Kubernetes binary from the cache (`$PODID_CACHE/bin`, built by `scripts/kubernetes.sh`).
pub(crate) fn kube_bin(name: &str) -> Result<PathBuf> {
    let path = cache_dir().join("bin").join(name);
    if is_executable(&path) {
        Ok(path)
    } else {
        Err(Error::Prerequisite {
            what: format!("no {name} at {}", path.display()),
            how:
                "Build the Kubernetes binaries once with `scripts/kubernetes.sh` (as root; about 9 minutes)."
                    .into(),
        })
    }
}

/// `program` on `PATH`, or a prerequisite error saying which package brings it.
pub(crate) fn on_path(program: &str, package: &str) -> Result<PathBuf> {
    find_on_path(program).ok_or_else(|| Error::Prerequisite {
        what: format!("no {program} on PATH"),
        how: format!("Install it with `apt-get install {package}` (scripts/test-deps.sh does)."),
    })
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
