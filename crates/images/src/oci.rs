//! The image tarball: an OCI image layout and a `docker save` manifest in one tar (as
//! `docker save` itself writes since Docker 25), so the same file imports with
//! `ctr images import`, loads with `docker load` and copies with `skopeo copy docker-archive:`.
//!
//! ```text
//!  <file>.tar
//!    blobs/sha256/<config>     image config: user, entrypoint, env, labels, diff_ids, history
//!    blobs/sha256/<layer>...   uncompressed layer tarballs, bottom first (digest = diff_id)
//!    blobs/sha256/<manifest>   OCI manifest of config + layers
//!    index.json                OCI index: that manifest, annotated with the image reference
//!    manifest.json             docker save: [{Config, RepoTags, Layers}] naming the same blobs
//!    oci-layout                {"imageLayoutVersion":"1.0.0"}
//! ```
//!
//! Every JSON document comes from a typed struct (field order fixed by the struct, maps sorted),
//! and the outer tar is written like a layer (sorted, fixed times), so equal inputs give equal
//! bytes and equal digests.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::layer::{Blob, HashingWriter, digest};

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Annotation containerd names an imported image after.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// OCI annotation with the tag.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: &'static str,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'static str, String>,
}

impl Descriptor {
    fn of(media_type: &'static str, blob: &Blob) -> Self {
        Self { media_type, digest: blob.digest.clone(), size: blob.size, annotations: BTreeMap::new() }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    media_type: &'static str,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<Descriptor>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest<'a> {
    config: String,
    repo_tags: [&'a str; 1],
    layers: Vec<String>,
}

/// What the container runs (the config's `config` object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// `uid:gid`.
    pub user: String,
    /// `NAME=value`, `PATH` first.
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// One step of the image's history (one per layer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct History {
    pub created: String,
    pub created_by: String,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct Config<'a> {
    created: &'a str,
    architecture: &'a str,
    os: &'static str,
    config: &'a RunConfig,
    rootfs: RootFs,
    history: &'a [History],
}

/// A layer blob on disk.
#[derive(Debug, Clone)]
pub struct LayerFile {
    pub path: PathBuf,
    pub blob: Blob,
}

/// An image ready to be written: its JSON documents and the layer files they name.
#[derive(Debug, Clone)]
pub struct Assembled {
    /// `repository:tag`.
    pub reference: String,
    pub config: (Blob, Vec<u8>),
    pub manifest: (Blob, Vec<u8>),
    pub index: Vec<u8>,
    pub docker_manifest: Vec<u8>,
    pub layers: Vec<LayerFile>,
    /// File times in the outer tarball.
    pub mtime: u64,
}

/// What an image is made of.
pub struct Parts<'a> {
    pub reference: &'a str,
    pub architecture: &'a str,
    /// RFC 3339 time of the image.
    pub created: &'a str,
    pub run: &'a RunConfig,
    /// Bottom first, one history entry each.
    pub layers: Vec<(LayerFile, History)>,
    pub mtime: u64,
}

/// Computes the image's JSON documents and digests (no I/O).
pub fn assemble(parts: Parts<'_>) -> Result<Assembled> {
    let (layers, history): (Vec<LayerFile>, Vec<History>) = parts.layers.into_iter().unzip();
    let config = Config {
        created: parts.created,
        architecture: parts.architecture,
        os: "linux",
        config: parts.run,
        rootfs: RootFs { kind: "layers", diff_ids: layers.iter().map(|l| l.blob.digest.clone()).collect() },
        history: &history,
    };
    let config_json = serde_json::to_vec(&config)?;
    let config_blob = Blob { digest: digest(&config_json), size: config_json.len() as u64 };
    let manifest = Manifest {
        schema_version: 2,
        media_type: MEDIA_MANIFEST,
        config: Descriptor::of(MEDIA_CONFIG, &config_blob),
        layers: layers.iter().map(|l| Descriptor::of(MEDIA_LAYER, &l.blob)).collect(),
    };
    let manifest_json = serde_json::to_vec(&manifest)?;
    let manifest_blob = Blob { digest: digest(&manifest_json), size: manifest_json.len() as u64 };
    let tag = parts.reference.rsplit_once(':').map_or("latest", |(_, t)| t);
    let mut at_top = Descriptor::of(MEDIA_MANIFEST, &manifest_blob);
    at_top.annotations.insert(ANNOTATION_CONTAINERD_NAME, parts.reference.to_string());
    at_top.annotations.insert(ANNOTATION_REF_NAME, tag.to_string());
    let index = Index { schema_version: 2, media_type: MEDIA_INDEX, manifests: vec![at_top] };
    let docker = [DockerManifest {
        config: blob_path(&config_blob),
        repo_tags: [parts.reference],
        layers: layers.iter().map(|l| blob_path(&l.blob)).collect(),
    }];
    Ok(Assembled {
        reference: parts.reference.to_string(),
        config: (config_blob, config_json),
        manifest: (manifest_blob, manifest_json),
        index: serde_json::to_vec(&index)?,
        docker_manifest: serde_json::to_vec(&docker)?,
        layers,
        mtime: parts.mtime,
    })
}

/// `blobs/sha256/<hex>`.
pub fn blob_path(blob: &Blob) -> String {
    format!("blobs/{}", blob.digest.replacen(':', "/", 1))
}

enum Content<'a> {
    Dir,
    Bytes(&'a [u8]),
    File(&'a Path, u64),
}

/// Writes the image tarball to `out` and returns its digest and size.
pub fn write(image: &Assembled, out: impl Write) -> Result<Blob> {
    let mut entries: BTreeMap<String, Content<'_>> = BTreeMap::new();
    entries.insert("blobs/".into(), Content::Dir);
    entries.insert("blobs/sha256/".into(), Content::Dir);
    entries.insert(blob_path(&image.config.0), Content::Bytes(&image.config.1));
    entries.insert(blob_path(&image.manifest.0), Content::Bytes(&image.manifest.1));
    for l in &image.layers {
        entries.insert(blob_path(&l.blob), Content::File(&l.path, l.blob.size));
    }
    entries.insert("index.json".into(), Content::Bytes(&image.index));
    entries.insert("manifest.json".into(), Content::Bytes(&image.docker_manifest));
    entries.insert("oci-layout".into(), Content::Bytes(br#"{"imageLayoutVersion":"1.0.0"}"#));
    let mut hashed = HashingWriter::new(out);
    {
        let mut tar = tar::Builder::new(&mut hashed);
        for (path, content) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(image.mtime);
            match content {
                Content::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    tar.append_data(&mut h, path, std::io::empty())?;
                }
                Content::Bytes(b) => {
                    h.set_mode(0o644);
                    h.set_size(b.len() as u64);
                    tar.append_data(&mut h, path, b)?;
                }
                Content::File(p, size) => {
                    h.set_mode(0o644);
                    h.set_size(size);
                    tar.append_data(&mut h, path, std::fs::File::open(p)?)?;
                }
            }
        }
        tar.finish()?;
    }
    hashed.finish()
}

/// RFC 3339 UTC time of `secs` since the epoch (`2025-01-01T00:00:00Z`).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_600), "2025-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_825_599), "2000-02-29T11:59:59Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    fn parts<'a>(run: &'a RunConfig, layer: &Path) -> Parts<'a> {
        let blob = Blob { digest: digest(b"layer"), size: 5 };
        let history = History { created: rfc3339(7), created_by: "test".into() };
        Parts {
            reference: "ghcr.io/podid/podid-nmi:v0.1.0",
            architecture: "amd64",
            created: "1970-01-01T00:00:07Z",
            run,
            layers: vec![(LayerFile { path: layer.to_path_buf(), blob }, history)],
            mtime: 7,
        }
    }

    #[test]
    fn the_index_names_the_image_and_docker_manifest_names_the_same_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let layer = dir.path().join("l.tar");
        std::fs::write(&layer, b"layer").unwrap();
        let run = RunConfig {
            user: "0:0".into(),
            env: vec!["PATH=/bin".into()],
            entrypoint: vec!["/x".into()],
            labels: BTreeMap::new(),
        };
        let a = assemble(parts(&run, &layer)).unwrap();
        let index: serde_json::Value = serde_json::from_slice(&a.index).unwrap();
        let m = &index["manifests"][0];
        assert_eq!(m["digest"], a.manifest.0.digest.as_str());
        assert_eq!(m["annotations"][ANNOTATION_CONTAINERD_NAME], "ghcr.io/podid/podid-nmi:v0.1.0");
        assert_eq!(m["annotations"][ANNOTATION_REF_NAME], "v0.1.0");
        let docker: serde_json::Value = serde_json::from_slice(&a.docker_manifest).unwrap();
        assert_eq!(docker[0]["Config"], blob_path(&a.config.0));
        assert_eq!(docker[0]["Layers"][0], format!("blobs/sha256/{}", &digest(b"layer")[7..]));
        let config: serde_json::Value = serde_json::from_slice(&a.config.1).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], digest(b"layer"));
        assert_eq!(config["config"]["User"], "0:0");

        let (mut one, mut two) = (Vec::new(), Vec::new());
        let blob = write(&a, &mut one).unwrap();
        write(&assemble(parts(&run, &layer)).unwrap(), &mut two).unwrap();
        assert_eq!(one, two, "same inputs, same bytes");
        assert_eq!(blob.digest, digest(&one));
        let mut names = Vec::new();
        for e in tar::Archive::new(one.as_slice()).entries().unwrap() {
            names.push(e.unwrap().path().unwrap().display().to_string());
        }
        assert_eq!(names.last().map(String::as_str), Some("oci-layout"));
        assert!(names.contains(&blob_path(&a.manifest.0)));
    }
}
