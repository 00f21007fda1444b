//! The programs a build runs (mmdebstrap, unshare, cargo, gcc, python3 -m pip), found on `PATH`
//! with a hint on how to install each one.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Lines of a failed command's output kept in the error.
const TAIL_LINES: usize = 40;

/// Debian packages that provide each program.
const HINTS: &[(&str, &str)] = &[
    ("mmdebstrap", "apt-get install mmdebstrap"),
    ("unshare", "apt-get install util-linux"),
    ("gcc", "apt-get install gcc libc6-dev (static glibc for gcc -static)"),
    ("python3", "apt-get install python3 python3-pip"),
    ("dpkg", "a Debian or Ubuntu machine"),
    ("git", "apt-get install git"),
];

/// `program` on `PATH`, or an error that says how to install it.
pub fn require(program: &str) -> Result<PathBuf> {
    find_on_path(program).ok_or_else(|| Error::Missing {
        program: program.into(),
        hint: HINTS.iter().find(|(p, _)| *p == program).map_or("install it", |(_, h)| h).into(),
    })
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|c| c.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Fails unless this process runs as uid 0.
pub fn require_root() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().next());
    if uid == Some("0") { Ok(()) } else { Err(Error::NotRoot) }
}

/// Runs `cmd` with its output captured; on failure the error holds the output's last lines.
pub fn run(cmd: &mut Command, what: &str) -> Result<()> {
    output(cmd, what).map(drop)
}

/// Runs `cmd` and returns its standard output (standard error is kept for the error only).
pub fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    require(&program)?;
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    Err(Error::Command { command: what.into(), status: out.status.to_string(), output: tail })
}

/// `mmdebstrap --version` (`mmdebstrap 1.3.5`).
pub fn mmdebstrap_version() -> Result<String> {
    Ok(output(Command::new("mmdebstrap").arg("--version"), "mmdebstrap --version")?.trim().to_string())
}

/// Debian's name of this machine's architecture (`amd64`).
pub fn dpkg_architecture() -> Result<String> {
    Ok(output(Command::new("dpkg").arg("--print-architecture"), "dpkg --print-architecture")?
        .trim()
        .to_string())
}

/// Seconds since the epoch of the last commit of the repository at `repo`, if it is one.
pub fn commit_time(repo: &Path) -> Option<u64> {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(repo).args(["log", "-1", "--format=%ct"]);
    output(&mut cmd, "git log").ok()?.trim().parse().ok()
}
