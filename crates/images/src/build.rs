//! `podid-images build`: release binaries, cached base layers and one top layer per image,
//! assembled into tarballs and an index.
//!
//! ```text
//!  cargo build --release (shipped bins)   cargo build --release -p podid-images --features sdk-probe
//!          │                                        │
//!  catalog ─┼─ base: rootfs::ensure (cache) ─────────┼──▶ [base layer, top layer] + config
//!          └─ top layer: bins, repo files, gcc -static, pip --target (cache)
//!                                                   ▼
//!  target/images/<file>.tar (rewritten only when its manifest digest changes) + index.json
//! ```
//!
//! Nothing is written outside the output folder, the cargo target folder and the cache.
use std::collections::BTreeMap;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::index::{self, Index};
use crate::layer::{Blob, Entry, Kind, Layer};
use crate::oci::{self, History, LayerFile, RunConfig};
use crate::rootfs::{self, Rootfs};
use crate::spec::{self, Base, Image, Source};
use crate::tools::{self, run};

/// Where and what to build.
#[derive(Debug, Clone)]
pub struct Options {
    /// Repository root (the cargo workspace).
    pub repo: PathBuf,
    /// Cargo's target folder (release binaries are read from `<target>/release`).
    pub target_dir: PathBuf,
    /// Output folder (`target/images`).
    pub out: PathBuf,
    /// Cache root (`$PODID_CACHE`).
    pub cache: PathBuf,
    /// Image names; empty means all.
    pub only: Vec<String>,
    /// Run cargo (off: use the release binaries already there).
    pub cargo: bool,
    /// Rebuild the base layers even if cached.
    pub refresh_bases: bool,
    /// File and config times of the top layers.
    pub epoch: u64,
}

/// What happened to one image.
#[derive(Debug, Clone)]
pub struct Built {
    pub entry: index::Entry,
    /// The tarball was (re)written; `false`: it was already up to date.
    pub written: bool,
}

/// Builds the selected images and updates the index.
pub fn build(opts: &Options) -> Result<Vec<Built>> {
    let images = select(&opts.only)?;
    let tmp = opts.out.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    if opts.cargo {
        cargo_build(opts, &images)?;
    }
    let arch = tools::dpkg_architecture()?;
    let old = Index::read(&opts.out);
    let mut bases: BTreeMap<&'static str, Rootfs> = BTreeMap::new();
    let mut built = Vec::new();
    for image in &images {
        let base = match &image.base {
            Some(b) => Some(base_layer(opts, b, &tmp, &mut bases)?),
            None => None,
        };
        let b = image_tarball(opts, image, base, &arch, old.as_ref(), &tmp)?;
        say(&format!(
            "{:<10} {:<34} {:>6.1} MB  {}  {}",
            image.name,
            b.entry.reference,
            b.entry.size as f64 / 1e6,
            &b.entry.digest[..19],
            if b.written { "written" } else { "unchanged" }
        ));
        built.push(b);
    }
    write_index(opts, old, &built)?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(built)
}

fn say(msg: &str) {
    eprintln!("[images] {msg}");
}

/// The catalog images called `only` (all if empty), in catalog order.
pub fn select(only: &[String]) -> Result<Vec<Image>> {
    let all = spec::catalog();
    if let Some(unknown) = only.iter().find(|n| !all.iter().any(|i| i.name == n.as_str())) {
        return Err(Error::UnknownImage(unknown.clone()));
    }
    Ok(all.into_iter().filter(|i| only.is_empty() || only.iter().any(|n| n == i.name)).collect())
}

/// The cargo invocations the images need: shipped binaries in one (the Dockerfile's), each
/// feature-gated binary in its own (its features must not reach the shipped binaries).
///
/// Packages are named with `-p`: cargo then unifies features over those packages' dependencies
/// only, so no other workspace member (test kit, benches, this crate) changes how the shipped
/// binaries are compiled.
pub fn cargo_invocations(images: &[Image]) -> Vec<Vec<String>> {
    let mut packages: Vec<&str> = Vec::new();
    let mut bins: Vec<&str> = Vec::new();
    let mut gated: Vec<(&str, &str, &str)> = Vec::new();
    for f in images.iter().flat_map(|i| &i.files) {
        match f.source {
            Source::Bin { package, name } => {
                if !packages.contains(&package) {
                    packages.push(package);
                }
                if !bins.contains(&name) {
                    bins.push(name);
                }
            }
            Source::FeatureBin { package, feature, name } if !gated.contains(&(package, feature, name)) => {
                gated.push((package, feature, name));
            }
            _ => {}
        }
    }
    let base = ["build", "--release", "--locked"].map(String::from);
    let mut out = Vec::new();
    if !bins.is_empty() {
        let mut args = base.to_vec();
        packages.iter().for_each(|p| args.extend(["-p".to_string(), p.to_string()]));
        bins.iter().for_each(|b| args.extend(["--bin".to_string(), b.to_string()]));
        out.push(args);
    }
    for (package, feature, name) in gated {
        let mut args = base.to_vec();
        args.extend(["-p", package, "--features", feature, "--bin", name].map(String::from));
        out.push(args);
    }
    out
}

fn cargo_build(opts: &Options, images: &[Image]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for args in cargo_invocations(images) {
        say(&format!("cargo {}", args.join(" ")));
        let started = Instant::now();
        let mut cmd = Command::new(&cargo);
        cmd.args(&args).current_dir(&opts.repo);
        for (key, _) in std::env::vars_os() {
            if let Some(k) = key.to_str().filter(|k| set_by_cargo_for_a_run(k)) {
                cmd.env_remove(k);
            }
        }
        // `target_dir` is `$CARGO_TARGET_DIR` or the repository's `target`, which cargo finds
        // by itself: setting it anew would be one more difference from a plain `cargo build`.
        let status = cmd.status()?;
        if !status.success() {
            return Err(Error::Command {
                command: format!("cargo {}", args.join(" ")),
                status: status.to_string(),
                output: "(printed above)".into(),
            });
        }
        say(&format!("cargo done in {:.1} s", started.elapsed().as_secs_f64()));
    }
    Ok(())
}

/// Variables `cargo run`/`cargo test` set for the program they start (`CARGO_PKG_NAME`,
/// `CARGO_MANIFEST_DIR`, `CARGO_BIN_EXE_*`, the test's `LD_LIBRARY_PATH`, ...). A nested cargo
/// must not pass them on to the crates it builds: a build script or `env!` that sees them
/// changed makes cargo rebuild, and the release binaries would differ from `make images`'.
pub fn set_by_cargo_for_a_run(key: &str) -> bool {
    const KEEP: &[&str] = &["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_INCREMENTAL", "CARGO_LOG"];
    const KEEP_PREFIX: &[&str] = &[
        "CARGO_BUILD_",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
        "CARGO_TERM_",
        "CARGO_PROFILE_",
    ];
    let cargo_var =
        key.starts_with("CARGO_") && !KEEP.contains(&key) && !KEEP_PREFIX.iter().any(|p| key.starts_with(p));
    cargo_var
        || key.starts_with("__CARGO")
        || ["CARGO", "OUT_DIR", "LD_LIBRARY_PATH", "RUST_RECURSION_COUNT"].contains(&key)
}

fn base_layer(
    opts: &Options,
    base: &Base,
    tmp: &Path,
    memo: &mut BTreeMap<&'static str, Rootfs>,
) -> Result<(LayerFile, Rootfs, History)> {
    let rootfs = match memo.get(base.name) {
        Some(r) => r.clone(),
        None => {
            let started = Instant::now();
            let r = rootfs::ensure(base, &opts.cache, tmp, opts.refresh_bases)?;
            let secs = started.elapsed().as_secs_f64();
            if secs > 2.0 {
                say(&format!("base {} built in {secs:.1} s ({} packages)", base.name, r.packages.len()));
            }
            memo.insert(base.name, r.clone());
            r
        }
    };
    let file = LayerFile { path: rootfs.layer_path(&opts.cache, base), blob: rootfs.blob.clone() };
    let history = History { created: oci::rfc3339(spec::BASE_EPOCH), created_by: base_history(base) };
    Ok((file, rootfs, history))
}

/// What made a base layer, in words (the image's history).
pub fn base_history(base: &Base) -> String {
    let variant = match base.variant {
        spec::Variant::Slim => "minbase, slim",
        spec::Variant::Extract => "extract",
    };
    let mut s = format!("mmdebstrap {} ({variant}) + {}", spec::SUITE, base.packages.join(" "));
    for cmd in base.setup {
        s.push_str(" && ");
        s.push_str(cmd);
    }
    s
}

fn image_tarball(
    opts: &Options,
    image: &Image,
    base: Option<(LayerFile, Rootfs, History)>,
    arch: &str,
    old: Option<&Index>,
    tmp: &Path,
) -> Result<Built> {
    let top = top_layer(opts, image, tmp)?;
    let top_path = tmp.join(format!("{}.top.tar", image.name));
    let content_size = top.content_size() + base.as_ref().map_or(0, |b| b.1.content_size);
    let top_blob = top.write(BufWriter::new(std::fs::File::create(&top_path)?))?;
    let top_history = History { created: oci::rfc3339(opts.epoch), created_by: top_history(image) };
    let mut layers = Vec::new();
    let mut packages = Vec::new();
    if let Some((file, rootfs, history)) = base {
        layers.push((file, history));
        packages = rootfs.packages;
    }
    if image.files.is_empty() {
        let _ = std::fs::remove_file(&top_path);
    } else {
        layers.push((LayerFile { path: top_path.clone(), blob: top_blob }, top_history));
    }
    let run = run_config(image);
    let reference = image.reference();
    let created = oci::rfc3339(opts.epoch);
    let parts = oci::Parts {
        reference: &reference,
        architecture: arch,
        created: &created,
        run: &run,
        layers,
        mtime: opts.epoch,
    };
    let assembled = oci::assemble(parts)?;
    let file = image.file_name();
    let path = opts.out.join(&file);
    let entry = |tarball: Blob| index::Entry {
        name: image.name.into(),
        reference: reference.clone(),
        file: file.clone(),
        size: tarball.size,
        digest: assembled.manifest.0.digest.clone(),
        config_digest: assembled.config.0.digest.clone(),
        file_digest: tarball.digest,
        content_size,
        layers: assembled.layers.iter().map(|l| l.blob.clone()).collect(),
        shipped: image.shipped,
        packages: packages.clone(),
    };
    let fresh = old.and_then(|i| i.get(image.name)).filter(|e| {
        e.digest == assembled.manifest.0.digest
            && e.file == file
            && std::fs::metadata(&path).is_ok_and(|m| m.len() == e.size)
    });
    if let Some(e) = fresh {
        let _ = std::fs::remove_file(&top_path);
        return Ok(Built {
            entry: entry(Blob { digest: e.file_digest.clone(), size: e.size }),
            written: false,
        });
    }
    let staging = opts.out.join(format!(".{file}.{}", std::process::id()));
    let written = oci::write(&assembled, BufWriter::new(std::fs::File::create(&staging)?));
    let _ = std::fs::remove_file(&top_path);
    let tarball = written?;
    std::fs::rename(&staging, &path)?;
    Ok(Built { entry: entry(tarball), written: true })
}

/// The image's config: user, `PATH` and the spec's env, entrypoint, description label.
pub fn run_config(image: &Image) -> RunConfig {
    let mut env = vec![format!("PATH={}", spec::PATH)];
    env.extend(image.env.iter().map(|(k, v)| format!("{k}={v}")));
    // The Dockerfile's LABEL (the comparison test holds both to the same description).
    let labels = [(crate::dockerfile::DESCRIPTION_LABEL.to_string(), image.description.to_string())];
    RunConfig {
        user: image.user.into(),
        env,
        entrypoint: image.entrypoint.iter().map(|s| s.to_string()).collect(),
        labels: labels.into(),
    }
}

fn top_history(image: &Image) -> String {
    let files: Vec<String> = image
        .files
        .iter()
        .map(|f| match &f.source {
            Source::Bin { package, name } => {
                format!("{} (cargo --release -p {package} --bin {name})", f.dest)
            }
            Source::FeatureBin { package, feature, name } => {
                format!("{} (cargo --release -p {package} --features {feature} --bin {name})", f.dest)
            }
            Source::Repo(p) => format!("{} ({p})", f.dest),
            Source::StaticC(p) => format!("{} (gcc -static {p})", f.dest),
            Source::Pip { requirements } => format!("{} (pip install --target, {requirements})", f.dest),
        })
        .collect();
    format!("podid-images: {}", files.join(", "))
}

fn top_layer(opts: &Options, image: &Image, tmp: &Path) -> Result<Layer> {
    let mut layer = Layer::default();
    for f in &image.files {
        let read = |p: PathBuf| {
            std::fs::read(&p).map_err(|e| Error::Input { path: p, message: format!("{e} (was it built?)") })
        };
        match &f.source {
            Source::Bin { name, .. } => {
                let data = read(opts.target_dir.join("release").join(name))?;
                layer.insert_with_parents(f.dest, Entry::file(data, f.mode, opts.epoch));
            }
            Source::FeatureBin { name, .. } => {
                let data = read(opts.target_dir.join("release").join(name))?;
                layer.insert_with_parents(f.dest, Entry::file(data, f.mode, opts.epoch));
            }
            Source::Repo(p) => {
                let data = read(opts.repo.join(p))?;
                layer.insert_with_parents(f.dest, Entry::file(data, f.mode, opts.epoch));
            }
            Source::StaticC(p) => {
                let data = read(compile_static(&opts.repo.join(p), tmp)?)?;
                layer.insert_with_parents(f.dest, Entry::file(data, f.mode, opts.epoch));
            }
            Source::Pip { requirements } => {
                let site = crate::pip::ensure(&opts.repo.join(requirements), &opts.cache, tmp)?;
                add_tree(&mut layer, &site, f.dest, opts.epoch)?;
            }
        }
    }
    Ok(layer)
}

/// `gcc -static -Os -s`: a stripped static binary in `tmp`.
fn compile_static(source: &Path, tmp: &Path) -> Result<PathBuf> {
    let stem = source.file_stem().map_or_else(|| "a.out".into(), |s| s.to_string_lossy().into_owned());
    let out = tmp.join(stem);
    let mut cmd = Command::new("gcc");
    cmd.args(["-static", "-Os", "-s", "-Wall", "-Werror", "-o"]).arg(&out).arg(source);
    run(&mut cmd, &format!("gcc -static {}", source.display()))?;
    Ok(out)
}

/// Adds the files under `dir` at `dest` (root-owned; 0755 for executables and folders, else 0644).
fn add_tree(layer: &mut Layer, dir: &Path, dest: &str, mtime: u64) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    layer.insert_with_parents(dest, Entry::dir(mtime));
    let mut stack = vec![(dir.to_path_buf(), dest.trim_end_matches('/').to_string())];
    while let Some((from, to)) = stack.pop() {
        for e in std::fs::read_dir(&from)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let (src, dst) = (e.path(), format!("{to}/{name}"));
            let meta = std::fs::symlink_metadata(&src)?;
            let entry = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&src)?.to_string_lossy().into_owned();
                Entry { kind: Kind::Symlink(target), mode: 0o777, ..Entry::dir(mtime) }
            } else if meta.is_dir() {
                stack.push((src, dst.clone()));
                Entry::dir(mtime)
            } else {
                let mode = if meta.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 };
                Entry::file(std::fs::read(&src)?, mode, mtime)
            };
            layer.insert(&dst, entry);
        }
    }
    Ok(())
}

fn write_index(opts: &Options, old: Option<Index>, built: &[Built]) -> Result<()> {
    let mut by_name: BTreeMap<String, index::Entry> = BTreeMap::new();
    // Images not rebuilt this time stay listed while their tarballs are there.
    for e in old.map(|i| i.images).unwrap_or_default() {
        if Index::path(&opts.out, &e).exists() {
            by_name.insert(e.name.clone(), e);
        }
    }
    for b in built {
        by_name.insert(b.entry.name.clone(), b.entry.clone());
    }
    let images = spec::catalog().iter().filter_map(|i| by_name.remove(i.name)).collect();
    Index { schema: index::SCHEMA, images }.write(&opts.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_cargo_gets_the_users_cargo_settings_but_not_what_cargo_test_set() {
        for k in
            ["CARGO", "CARGO_PKG_NAME", "CARGO_MANIFEST_DIR", "CARGO_BIN_EXE_podid-images", "LD_LIBRARY_PATH"]
        {
            assert!(set_by_cargo_for_a_run(k), "{k}");
        }
        for k in ["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_BUILD_JOBS", "CARGO_NET_OFFLINE", "PATH", "HOME"] {
            assert!(!set_by_cargo_for_a_run(k), "{k}");
        }
    }

    #[test]
    fn shipped_binaries_build_in_one_invocation_and_the_probe_in_its_own() {
        let inv = cargo_invocations(&spec::catalog());
        assert_eq!(inv.len(), 2, "{inv:?}");
        let shipped = inv[0].join(" ");
        assert!(
            shipped
                .starts_with("build --release --locked -p podid-nmi -p podid-mic -p podid-cli -p podid-demo")
        );
        assert!(
            shipped.ends_with("--bin podid-nmi --bin podid-mic --bin podid --bin podid-demo"),
            "{shipped}"
        );
        assert_eq!(
            inv[1].join(" "),
            "build --release --locked -p podid-images --features sdk-probe --bin sdk-probe"
        );
    }
}
