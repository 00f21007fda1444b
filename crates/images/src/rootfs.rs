//! Debian root file systems by mmdebstrap, normalised into a layer and cached by everything
//! that determines them.
//!
//! ```text
//!  Base ──▶ key = sha256(variant, packages, setup, suite, mirrors, epoch, excludes,
//!                        mmdebstrap version, architecture, normalisation format)
//!          $PODID_CACHE/images/rootfs/<name>-<key>/layer.tar   the normalised layer (the blob)
//!                                                 /meta.json   digest, size, package versions
//! ```
//!
//! A hit costs nothing; a miss runs mmdebstrap (about 20 s per base here) in a private mount
//! namespace (`unshare --mount`: the chroot's /proc, /sys and /dev mounts never reach the host's
//! table), with its temporary folder under the build's own folder. The mirror's packages move on
//! (security updates) while the key does not: `podid-images build --refresh-bases` rebuilds.
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::layer::{self, Blob, Normalize};
use crate::spec::{BASE_EPOCH, Base, MIRRORS, SUITE, Variant};
use crate::tools::{self, run};

/// Bumped whenever [`layer::from_tar`], [`DROP`] or the mmdebstrap arguments change what a cached
/// layer holds.
const FORMAT: u32 = 2;

/// dpkg options of the slim variant: what `debian:<suite>-slim` leaves out (docs but copyrights,
/// man and info pages, locales but the alias table).
pub const SLIM_DPKG: &[&str] = &[
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/linda/*",
    "path-exclude=/usr/share/lintian/overrides/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/man/*",
];

/// Paths dropped from every root file system: what the runtime provides (`/dev`'s nodes and
/// links), and caches and logs that differ from one run to the next.
pub const DROP: &[&str] = &[
    "dev/",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/cache/ldconfig/aux-cache",
    "var/lib/dpkg/diversions-old",
    "var/lib/dpkg/status-old",
    "var/log/alternatives.log",
    "var/log/apt/eipp.log.xz",
    "var/log/apt/history.log",
    "var/log/apt/term.log",
    "var/log/dpkg.log",
];

/// A cached base layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rootfs {
    /// Cache key (hex sha256 of [`KeyInputs`]).
    pub key: String,
    /// The layer blob.
    pub blob: Blob,
    /// Bytes of regular files in the layer.
    pub content_size: u64,
    /// `name=version` of every installed package (empty for [`Variant::Extract`]).
    pub packages: Vec<String>,
    /// Seconds mmdebstrap took when the entry was made.
    pub build_secs: f64,
}

impl Rootfs {
    /// The layer tarball.
    pub fn layer_path(&self, cache: &Path, base: &Base) -> PathBuf {
        entry_dir(cache, base, &self.key).join("layer.tar")
    }
}

/// Everything that determines a base layer.
#[derive(Serialize)]
struct KeyInputs<'a> {
    format: u32,
    suite: &'a str,
    variant: Variant,
    packages: &'a [&'a str],
    setup: &'a [&'a str],
    shell: &'a str,
    mirrors: &'a [&'a str],
    epoch: u64,
    dpkg: &'a [&'a str],
    drop: &'a [&'a str],
    mmdebstrap: &'a str,
    architecture: &'a str,
}

/// The cache key of `base` built with this mmdebstrap version for this architecture.
pub fn key(base: &Base, mmdebstrap: &str, architecture: &str) -> String {
    let inputs = KeyInputs {
        format: FORMAT,
        suite: SUITE,
        variant: base.variant,
        packages: base.packages,
        setup: base.setup,
        shell: base.shell,
        mirrors: MIRRORS,
        epoch: BASE_EPOCH,
        dpkg: if base.variant == Variant::Slim { SLIM_DPKG } else { &[] },
        drop: DROP,
        mmdebstrap,
        architecture,
    };
    let json = serde_json::to_vec(&inputs).unwrap_or_default();
    layer::digest(&json).trim_start_matches("sha256:").to_string()
}

fn entry_dir(cache: &Path, base: &Base, key: &str) -> PathBuf {
    cache.join("images/rootfs").join(format!("{}-{}", base.name, &key[..16]))
}

/// Quotes `s` for `sh` (single quotes).
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// mmdebstrap's arguments for `base`, writing the tarball `out`.
pub fn mmdebstrap_args(base: &Base, out: &Path) -> Vec<String> {
    let mut args = vec!["--mode=root".to_string(), "--format=tar".into()];
    match base.variant {
        Variant::Slim => {
            args.push("--variant=minbase".into());
            // Merged /usr the way bookworm's images have it (usr-is-merged, not usrmerge+perl).
            args.push("--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr".into());
            args.extend(SLIM_DPKG.iter().map(|o| format!("--dpkgopt={o}")));
        }
        Variant::Extract => args.push("--variant=extract".into()),
    }
    args.push(format!("--include={}", base.packages.join(",")));
    // mmdebstrap runs no customize hooks for `extract`; its extract hooks come last there.
    let hook = if base.variant == Variant::Extract { "--extract-hook" } else { "--customize-hook" };
    for cmd in base.setup {
        args.push(format!("{hook}=chroot \"$1\" {} -c {}", base.shell, sh_quote(cmd)));
    }
    args.push(SUITE.into());
    args.push(out.display().to_string());
    args.extend(MIRRORS.iter().map(|m| m.to_string()));
    args
}

/// The cached layer of `base`, made first if missing (or if `refresh`). `tmp` holds
/// mmdebstrap's temporary root and tarball.
pub fn ensure(base: &Base, cache: &Path, tmp: &Path, refresh: bool) -> Result<Rootfs> {
    let version = tools::mmdebstrap_version()?;
    let arch = tools::dpkg_architecture()?;
    let key = key(base, &version, &arch);
    let dir = entry_dir(cache, base, &key);
    if !refresh && let Some(hit) = read_meta(&dir, &key) {
        return Ok(hit);
    }
    tools::require_root()?;
    std::fs::create_dir_all(tmp)?;
    let raw = tmp.join(format!("{}-{}.mmdebstrap.tar", base.name, std::process::id()));
    let started = std::time::Instant::now();
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "mmdebstrap"])
        .args(mmdebstrap_args(base, &raw))
        .env("SOURCE_DATE_EPOCH", BASE_EPOCH.to_string())
        .env("TMPDIR", tmp)
        .env("LC_ALL", "C.UTF-8");
    let made = run(&mut cmd, "mmdebstrap");
    let build_secs = started.elapsed().as_secs_f64();
    let layer = made.and_then(|()| {
        let file = std::fs::File::open(&raw)?;
        layer::from_tar(std::io::BufReader::new(file), &Normalize { epoch: BASE_EPOCH, drop: DROP })
    });
    let _ = std::fs::remove_file(&raw);
    let layer = layer?;
    let packages = layer.get("var/lib/dpkg/status").map(|e| dpkg_packages(&e.kind)).unwrap_or_default();
    let content_size = layer.content_size();
    // Written next to the final folder, then renamed: a concurrent build sees all or nothing.
    let parent = dir.parent().unwrap_or(cache);
    std::fs::create_dir_all(parent)?;
    let staging = parent.join(format!(".{}-{}.tmp", base.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    let out = std::io::BufWriter::new(std::fs::File::create(staging.join("layer.tar"))?);
    let blob = layer.write(out)?;
    let rootfs = Rootfs { key: key.clone(), blob, content_size, packages, build_secs };
    std::fs::write(staging.join("meta.json"), serde_json::to_vec_pretty(&rootfs)?)?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&staging, &dir)?;
    Ok(rootfs)
}

fn read_meta(dir: &Path, key: &str) -> Option<Rootfs> {
    let meta: Rootfs = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).ok()?).ok()?;
    let size = std::fs::metadata(dir.join("layer.tar")).ok()?.len();
    (meta.key == key && size == meta.blob.size).then_some(meta)
}

/// `name=version` of the installed packages in a dpkg status file, sorted.
pub fn dpkg_packages(status: &layer::Kind) -> Vec<String> {
    let layer::Kind::File(bytes) = status else { return Vec::new() };
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')).map(str::trim))
        };
        let installed = field("Status").is_some_and(|s| s.ends_with(" installed"));
        if let (true, Some(p), Some(v)) = (installed, field("Package"), field("Version")) {
            out.push(format!("{p}={v}"));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{AGENT_BASE, CA_BASE};

    #[test]
    fn the_key_changes_with_every_input_that_shapes_the_file_system() {
        let k = key(&AGENT_BASE, "mmdebstrap 1.3.5", "amd64");
        assert_eq!(k, key(&AGENT_BASE, "mmdebstrap 1.3.5", "amd64"));
        assert_ne!(k, key(&AGENT_BASE, "mmdebstrap 1.3.6", "amd64"));
        assert_ne!(k, key(&AGENT_BASE, "mmdebstrap 1.3.5", "arm64"));
        assert_ne!(k, key(&CA_BASE, "mmdebstrap 1.3.5", "amd64"));
        let fewer = Base { packages: &["ca-certificates", "iptables"], ..AGENT_BASE };
        assert_ne!(k, key(&fewer, "mmdebstrap 1.3.5", "amd64"));
        let no_setup = Base { setup: &[], ..AGENT_BASE };
        assert_ne!(k, key(&no_setup, "mmdebstrap 1.3.5", "amd64"));
        let renamed = Base { name: "other", ..AGENT_BASE };
        assert_eq!(k, key(&renamed, "mmdebstrap 1.3.5", "amd64"), "the name is a label only");
    }

    #[test]
    fn setup_commands_run_in_the_chroot_quoted_for_sh() {
        let args = mmdebstrap_args(&AGENT_BASE, Path::new("/t/out.tar"));
        assert!(args.contains(&"--include=ca-certificates,conntrack,iptables".to_string()));
        assert!(args.contains(
            &"--customize-hook=chroot \"$1\" /bin/sh -c 'update-alternatives --set iptables /usr/sbin/iptables-nft'"
                .to_string()
        ));
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        let busybox = mmdebstrap_args(&crate::spec::BUSYBOX_BASE, Path::new("/t/out.tar"));
        assert!(busybox.iter().any(|a| a.starts_with("--extract-hook=chroot \"$1\" /bin/busybox sh -c ")));
        let at = args.iter().position(|a| a == SUITE).unwrap();
        assert_eq!(args[at + 1], "/t/out.tar");
        assert_eq!(&args[at + 2..], MIRRORS);
    }

    #[test]
    fn package_versions_come_from_installed_stanzas_only() {
        let status = "Package: b\nStatus: install ok installed\nVersion: 2\n\n\
                      Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n\
                      Package: a\nStatus: install ok installed\nPriority: required\nVersion: 1:3.0-1\n";
        let kind = layer::Kind::File(status.as_bytes().to_vec());
        assert_eq!(dpkg_packages(&kind), ["a=1:3.0-1", "b=2"]);
    }
}
