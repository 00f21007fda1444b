//! podid's container images, built without Docker or a registry: `make images` runs
//! `podid-images build`, which writes `target/images/<name>.tar` (OCI layout + `docker save`
//! manifest in one tarball) and `target/images/index.json`.
//!
//! ```text
//!  spec (catalog: bases, files, user, entrypoint)          docker/Dockerfile (same, for Docker)
//!    ├─ rootfs: mmdebstrap ─▶ normalised base layer (cached under $PODID_CACHE/images)
//!    ├─ build:  cargo --release, gcc -static, pip --target ─▶ top layer
//!    ├─ oci:    config + manifest + index ─▶ <name>.tar
//!    └─ index:  index.json (name, reference, file, size, digests) ─▶ the test kit's nodes
//! ```
//!
//! The crate is a build tool: no shipped binary depends on it. See docs/install.md ("Images").
#![forbid(unsafe_code)]

pub mod build;
pub mod dockerfile;
pub mod error;
pub mod index;
pub mod layer;
pub mod oci;
pub mod pip;
pub mod rootfs;
pub mod spec;
pub mod tools;

pub use error::{Error, Result};
pub use index::Index;

/// Overrides the cache folder (`${XDG_CACHE_HOME:-$HOME/.cache}/podid` by default), as the
/// test kit's `PODID_CACHE`.
pub const CACHE_ENV: &str = "PODID_CACHE";

/// `$PODID_CACHE`, else `${XDG_CACHE_HOME:-$HOME/.cache}/podid`.
pub fn cache_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV) {
        return dir.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| std::path::PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("podid")
}

/// The repository this crate was built from.
pub fn repo_dir() -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).unwrap_or(manifest).to_path_buf()
}

/// Cargo's target folder: `$CARGO_TARGET_DIR`, else `<repo>/target`.
pub fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_dir().join("target"), Into::into)
}
