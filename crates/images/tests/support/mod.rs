//! What the image tests share: the images built once per test binary (`podid-images build`,
//! which rewrites nothing when the index is fresh), their layers read back, and a throwaway
//! containerd.
#![allow(dead_code)]

pub mod containerd;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use podid_images::Index;

/// The output folder and its index after one build.
pub struct Built {
    pub out: PathBuf,
    pub index: Index,
}

impl Built {
    /// The index entry called `name`.
    pub fn entry(&self, name: &str) -> &podid_images::index::Entry {
        self.index.get(name).unwrap_or_else(|| panic!("no image {name} in the index"))
    }

    /// The tarball of `name`.
    pub fn tarball(&self, name: &str) -> PathBuf {
        Index::path(&self.out, self.entry(name))
    }
}

/// With this set, the build uses the release binaries already there (`--skip-cargo`): a fast
/// path for re-running the tests right after `make images`.
pub const SKIP_CARGO_ENV: &str = "PODID_IMAGES_SKIP_CARGO";

/// Builds every image once per test binary (the same command as `make images`).
pub fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = podid_images::target_dir().join("images");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_podid-images"));
        cmd.args(["build", "--out"]).arg(&out);
        if std::env::var_os(SKIP_CARGO_ENV).is_some() {
            cmd.arg("--skip-cargo");
        }
        let status = cmd.status().expect("run podid-images");
        assert!(status.success(), "podid-images build failed ({status}); its output is above");
        let index = Index::read(&out).expect("an index after the build");
        Built { out, index }
    })
}

/// One path of an image's file system (top layers win).
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub link: Option<String>,
    pub size: u64,
    /// Contents of files whose path is in the `keep` list.
    pub data: Option<Vec<u8>>,
}

/// The image's JSON documents and merged file tree.
pub struct Contents {
    pub docker_manifest: serde_json::Value,
    pub config: serde_json::Value,
    pub files: BTreeMap<String, Node>,
}

/// Reads `tarball`: manifest.json, the config and every layer (keeping the data of `keep`).
pub fn contents(tarball: &Path, keep: &[&str]) -> Contents {
    let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut layers: BTreeMap<String, BTreeMap<String, Node>> = BTreeMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(tarball).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let mut head = [0u8; 512];
        let n = read_up_to(&mut entry, &mut head);
        if n == 512 && head[257..262] == *b"ustar" {
            let rest = entry;
            layers.insert(path, layer_files(head.as_slice().chain(rest), keep));
        } else {
            let mut data = head[..n].to_vec();
            entry.read_to_end(&mut data).unwrap();
            blobs.insert(path, data);
        }
    }
    let docker_manifest: serde_json::Value = serde_json::from_slice(&blobs["manifest.json"]).unwrap();
    let m = &docker_manifest[0];
    let config = serde_json::from_slice(&blobs[m["Config"].as_str().unwrap()]).unwrap();
    let mut files = BTreeMap::new();
    for l in m["Layers"].as_array().unwrap() {
        files.extend(layers.remove(l.as_str().unwrap()).expect("every layer is in the tarball"));
    }
    Contents { docker_manifest, config, files }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

fn layer_files(r: impl Read, keep: &[&str]) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    for entry in tar::Archive::new(r).entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = format!("/{}", entry.path().unwrap().display().to_string().trim_end_matches('/'));
        let h = entry.header().clone();
        let data = keep.contains(&path.as_str()).then(|| {
            let mut d = Vec::new();
            entry.read_to_end(&mut d).unwrap();
            d
        });
        let link = entry.link_name().unwrap().map(|l| l.display().to_string());
        out.insert(
            path,
            Node {
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                link,
                size: h.size().unwrap(),
                data,
            },
        );
    }
    out
}
