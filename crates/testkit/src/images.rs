//! The image tarballs real nodes import: what `make images` wrote under `target/images/`,
//! listed in its `index.json`. Nothing is ever pulled: a node has exactly these images.
//!
//! ```text
//!  target/images/index.json   {"schema": 1, "images": [{"name": "nmi", "reference": "ghcr.io/podid/podid-nmi:v0.1.0",
//!                                                         "file": "podid-nmi.tar", ...}, ...]}
//! ```
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};

/// Overrides the folder of the images (default: `target/images` of the workspace).
pub const IMAGES_DIR_ENV: &str = "PODID_IMAGES_DIR";
/// The index's format version this test kit reads.
const SCHEMA: u32 = 1;

/// One image of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Image {
    /// Catalog name: `nmi`, `mic`, `demo`, `pause`, `busybox`, `sdk-python`, `sdk-rust`.
    pub name: String,
    /// `repository:tag`, as pod specs name it.
    pub reference: String,
    /// The tarball, relative to the catalog's folder.
    pub file: String,
}

/// The images of one `make images` run.
#[derive(Debug, Clone)]
pub struct Catalog {
    dir: PathBuf,
    images: Vec<Image>,
}

#[derive(Deserialize)]
struct Index {
    schema: u32,
    images: Vec<Image>,
}

impl Catalog {
    /// The catalog in `$PODID_IMAGES_DIR`, else the workspace's `target/images`.
    pub fn load() -> Result<Self> {
        let dir = match std::env::var_os(IMAGES_DIR_ENV) {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/images"),
        };
        Self::load_from(&dir)
    }

    /// The catalog in `dir`.
    pub fn load_from(dir: &Path) -> Result<Self> {
        let path = dir.join("index.json");
        let missing = |why: String| Error::Prerequisite {
            what: format!("no usable image index at {} ({why})", path.display()),
            how: "Build the images once with `make images` (or point PODID_IMAGES_DIR at them).".into(),
        };
        let bytes = std::fs::read(&path).map_err(|e| missing(e.to_string()))?;
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| missing(e.to_string()))?;
        if index.schema != SCHEMA {
            return Err(missing(format!("schema {} where {SCHEMA} is read", index.schema)));
        }
        Ok(Self { dir: dir.to_owned(), images: index.images })
    }

    /// Image `name`.
    pub fn get(&self, name: &str) -> Result<&Image> {
        self.images.iter().find(|i| i.name == name).ok_or_else(|| Error::Prerequisite {
            what: format!("no image {name} in {}", self.dir.join("index.json").display()),
            how: "Rebuild the images with `make images`.".into(),
        })
    }

    /// The reference of image `name`.
    pub fn reference(&self, name: &str) -> Result<String> {
        Ok(self.get(name)?.reference.clone())
    }

    /// The tarball of image `name`, which must exist.
    pub fn tarball(&self, name: &str) -> Result<PathBuf> {
        let path = self.dir.join(&self.get(name)?.file);
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::Prerequisite {
                what: format!("image {name}: no {}", path.display()),
                how: "Rebuild the images with `make images`.".into(),
            })
        }
    }

    /// The tarballs of images `names`.
    pub fn tarballs(&self, names: &[&str]) -> Result<Vec<PathBuf>> {
        names.iter().map(|n| self.tarball(n)).collect()
    }
}
