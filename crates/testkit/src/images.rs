//! The image tarballs real nodes import (built by `make images`; nothing is ever pulled).
use std::path::PathBuf;

use crate::{Error, Result};

/// Overrides the folder of the image tarballs (default: `target/images` of the workspace).
pub const IMAGES_DIR_ENV: &str = "PODID_IMAGES_DIR";
/// The busybox test image.
pub const BUSYBOX: &str = "podid.test/busybox:1";

/// Where the tarballs are.
pub fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(IMAGES_DIR_ENV) {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/images")
}

/// The tarball of image file `name` (e.g. `pause.tar`), which must exist.
pub fn tarball(name: &str) -> Result<PathBuf> {
    let path = dir().join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Prerequisite {
            what: format!("no image {}", path.display()),
            how: "Build the images once with `make images` (or point PODID_IMAGES_DIR at them).".into(),
        })
    }
}

/// The pause and busybox images every test cluster imports.
pub fn test_images() -> Result<Vec<PathBuf>> {
    Ok(vec![tarball("pause.tar")?, tarball("busybox.tar")?])
}
