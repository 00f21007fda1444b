//! Python packages for an image, installed on the build machine with `pip install --target`
//! for the image's interpreter (CPython 3.11, glibc 2.36: Debian bookworm), never for the
//! build machine's own, and cached by the requirements file and pip's version.
//!
//! The requirements file pins every package with its hash (`--require-hashes`, `--no-deps`):
//! the same file installs the same wheels anywhere. No byte code is compiled (it embeds times)
//! and console scripts are dropped (their `#!` names the build machine's python).
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::layer;
use crate::spec::PYTHON_VERSION;
use crate::tools::{output, run};

/// The wheels' platform tags the image's glibc (2.36) accepts, newest first.
const PLATFORMS: &[&str] = &[
    "manylinux_2_36_x86_64",
    "manylinux_2_34_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
];

/// pip's arguments for installing `requirements` into `target`.
pub fn pip_args(requirements: &Path, target: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-cache-dir",
        "--no-compile",
        "--no-deps",
        "--require-hashes",
        "--only-binary=:all:",
        "--implementation=cp",
        "--abi=cp311",
        "--abi=abi3",
        "--abi=none",
    ]
    .map(String::from)
    .to_vec();
    args.push(format!("--python-version={PYTHON_VERSION}"));
    args.extend(PLATFORMS.iter().map(|p| format!("--platform={p}")));
    args.push("--target".into());
    args.push(target.display().to_string());
    args.push("-r".into());
    args.push(requirements.display().to_string());
    args
}

/// The installed packages' folder for `requirements`, made first if not cached.
pub fn ensure(requirements: &Path, cache: &Path, tmp: &Path) -> Result<PathBuf> {
    let reqs = std::fs::read(requirements)
        .map_err(|e| Error::Input { path: requirements.into(), message: e.to_string() })?;
    let pip = output(Command::new("python3").args(["-m", "pip", "--version"]), "python3 -m pip --version")?;
    let pip_version = pip.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let mut keyed = reqs.clone();
    keyed.extend(pip_args(Path::new("R"), Path::new("T")).join(" ").bytes());
    keyed.extend(pip_version.bytes());
    let key = layer::digest(&keyed);
    let dir = cache.join("images/pip").join(&key[7..23]);
    if dir.join(".complete").exists() {
        return Ok(dir.join("site"));
    }
    let staging = cache.join("images/pip").join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    eprintln!("[images] pip install -r {} ({pip_version})", requirements.display());
    let mut cmd = Command::new("python3");
    cmd.args(pip_args(requirements, &staging.join("site"))).env("TMPDIR", tmp);
    std::fs::create_dir_all(tmp)?;
    run(&mut cmd, "pip install --target")?;
    let _ = std::fs::remove_dir_all(staging.join("site/bin"));
    std::fs::write(staging.join(".complete"), pip_version)?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&staging, &dir)?;
    Ok(dir.join("site"))
}
