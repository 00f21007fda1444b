//! `target/images/index.json`: what the last `make images` wrote, for the test kit (which
//! imports every tarball into each node's containerd) and for people.
//!
//! ```json
//! {"schema": 1, "images": [{
//!   "name": "nmi", "reference": "ghcr.io/podid/podid-nmi:v0.1.0", "file": "podid-nmi.tar",
//!   "size": 95123456, "digest": "sha256:<manifest>", "config_digest": "sha256:<image id>",
//!   "file_digest": "sha256:<tarball>", "content_size": 91000000, "layers": [...],
//!   "shipped": true, "packages": ["iptables=1.8.9-2", ...]}]}
//! ```
//!
//! `digest` is what `ctr images ls` shows in its DIGEST column after the import; `file` is
//! relative to the index's folder.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::layer::Blob;

/// File name of the index in the output folder.
pub const INDEX_FILE: &str = "index.json";
/// Version of this format.
pub const SCHEMA: u32 = 1;

/// Every image of the output folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub schema: u32,
    /// Sorted as the catalog: shipped images first.
    pub images: Vec<Entry>,
}

/// One image tarball.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Catalog name (`nmi`, `mic`, `demo`, `pause`, `busybox`, `sdk-python`, `sdk-rust`).
    pub name: String,
    /// `repository:tag` the image is imported as.
    pub reference: String,
    /// Tarball, relative to the index's folder.
    pub file: String,
    /// Bytes of the tarball.
    pub size: u64,
    /// Manifest digest (`ctr images ls` DIGEST; what a registry names the pushed image by).
    pub digest: String,
    /// Config digest (the image id).
    pub config_digest: String,
    /// sha256 of the tarball itself.
    pub file_digest: String,
    /// Bytes of regular files in all layers (about what the image takes unpacked).
    pub content_size: u64,
    /// Layer blobs, bottom first (uncompressed: digest = diff_id).
    pub layers: Vec<Blob>,
    /// Deployed by `podid install`.
    pub shipped: bool,
    /// `name=version` of the Debian packages of its base.
    pub packages: Vec<String>,
}

impl Index {
    /// The index in `dir`, if there is a readable one of this schema.
    pub fn read(dir: &Path) -> Option<Self> {
        let index: Self = serde_json::from_slice(&std::fs::read(dir.join(INDEX_FILE)).ok()?).ok()?;
        (index.schema == SCHEMA).then_some(index)
    }

    /// Writes the index into `dir` (all or nothing).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join(format!(".{INDEX_FILE}.{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, dir.join(INDEX_FILE))?;
        Ok(())
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.images.iter().find(|e| e.name == name)
    }

    /// Absolute path of `entry`'s tarball.
    pub fn path(dir: &Path, entry: &Entry) -> PathBuf {
        dir.join(&entry.file)
    }
}
