//! The sandbox's child processes: controller, agents, forwarders and the demo.
//!
//! Each child runs in its own process group (a Ctrl-C reaches only the sandbox, which then stops
//! them itself), logs to a file in the sandbox folder, and is killed and reaped on drop.
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;

use super::SandboxError;

/// The programs the sandbox runs, next to the running `podid`.
#[derive(Debug, Clone)]
pub struct Programs {
    pub mic: PathBuf,
    pub nmi: PathBuf,
    pub demo: PathBuf,
}

impl Programs {
    /// `podid-mic`, `podid-nmi` and `podid-demo` from the folder of the current executable.
    pub fn locate() -> Result<Self, SandboxError> {
        let exe = std::env::current_exe()
            .map_err(|e| SandboxError::new(format!("cannot find this program: {e}")))?;
        let dir = exe.parent().ok_or_else(|| SandboxError::new("this program has no folder".into()))?;
        // Test binaries live in target/<profile>/deps; the programs one level up.
        let dirs = [dir.to_path_buf(), dir.parent().map(Path::to_path_buf).unwrap_or_default()];
        let find = |name: &str| {
            dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()).ok_or_else(|| {
                SandboxError::new(format!(
                    "{name} is missing next to {}: build every program first with `cargo build --workspace` \
                     (or run `make sandbox`)",
                    exe.display()
                ))
            })
        };
        Ok(Self { mic: find("podid-mic")?, nmi: find("podid-nmi")?, demo: find("podid-demo")? })
    }
}

/// How a started child says it is ready.
pub enum Ready<'a> {
    /// It prints this line on stdout.
    Line(&'a str),
}

#[derive(Debug)]
struct Running {
    name: String,
    child: Child,
    log: Option<PathBuf>,
}

/// Children killed (SIGKILL) and reaped in reverse start order on drop.
#[derive(Debug)]
pub struct Children {
    dir: PathBuf,
    running: Vec<Running>,
}

impl Children {
    /// Children whose logs go to `dir`.
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_owned(), running: Vec::new() }
    }

    /// The log file of child `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// Starts `command` with stdout and stderr in `<dir>/<name>.log`.
    pub fn spawn(&mut self, name: &str, mut command: Command) -> Result<u32, SandboxError> {
        let log = self.log_path(name);
        let io = |e: std::io::Error| SandboxError::new(format!("cannot create {}: {e}", log.display()));
        let out = std::fs::File::create(&log).map_err(io)?;
        let err = out.try_clone().map_err(io)?;
        command.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        let child = command.spawn().map_err(|e| SandboxError::new(format!("cannot start {name}: {e}")))?;
        let pid = child.id();
        self.running.push(Running { name: name.to_owned(), child, log: Some(log) });
        Ok(pid)
    }

    /// Starts `command` and waits (10 s at most) until it says it is ready.
    pub async fn spawn_ready(
        &mut self,
        name: &str,
        mut command: Command,
        ready: Ready<'_>,
    ) -> Result<(), SandboxError> {
        let Ready::Line(want) = ready;
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        let mut child =
            command.spawn().map_err(|e| SandboxError::new(format!("cannot start {name}: {e}")))?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        self.running.push(Running { name: name.to_owned(), child, log: None });
        let want = want.to_owned();
        let first = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            stdout.map(|s| BufReader::new(s).read_line(&mut line));
            line
        });
        let line = tokio::time::timeout(Duration::from_secs(10), first)
            .await
            .map_err(|_| SandboxError::new(format!("{name} did not start within 10 s")))?
            .unwrap_or_default();
        if line.trim() == want {
            return Ok(());
        }
        self.stop(name);
        let mut err = String::new();
        if let Some(mut s) = stderr {
            let _ = std::io::Read::read_to_string(&mut s, &mut err);
        }
        Err(SandboxError::new(format!("{name} failed to start: {}", err.trim())))
    }

    /// Starts `command` and streams its stdout lines (also appended to `<dir>/<name>.log`).
    pub fn spawn_lines(
        &mut self,
        name: &str,
        mut command: Command,
    ) -> Result<mpsc::UnboundedReceiver<String>, SandboxError> {
        let log = self.log_path(name);
        let io = |e: std::io::Error| SandboxError::new(format!("cannot create {}: {e}", log.display()));
        let err = std::fs::File::create(&log).map_err(io)?;
        let mut copy = err.try_clone().map_err(io)?;
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(err).process_group(0);
        let mut child =
            command.spawn().map_err(|e| SandboxError::new(format!("cannot start {name}: {e}")))?;
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(stdout) = child.stdout.take() {
            // Reads until the child exits, also after the receiver is gone: a child that keeps
            // running (the demo under --keep) must never write into a closed pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(copy, "{line}");
                    let _ = tx.send(line);
                }
            });
        }
        self.running.push(Running { name: name.to_owned(), child, log: Some(log) });
        Ok(rx)
    }

    /// Fails if a child has exited, with the end of its log.
    pub fn check_alive(&mut self) -> Result<(), SandboxError> {
        for r in &mut self.running {
            if let Ok(Some(status)) = r.child.try_wait() {
                let tail = r.log.as_deref().map(|p| log_tail(p, 15)).unwrap_or_default();
                return Err(SandboxError::new(format!(
                    "{} exited ({status}); last log lines:\n{tail}",
                    r.name
                )));
            }
        }
        Ok(())
    }

    /// Kills and reaps child `name` (no error if it is gone).
    pub fn stop(&mut self, name: &str) {
        if let Some(i) = self.running.iter().position(|r| r.name == name) {
            let mut r = self.running.remove(i);
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }

    /// Names and pids of the running children.
    pub fn list(&self) -> Vec<(String, u32)> {
        self.running.iter().map(|r| (r.name.clone(), r.child.id())).collect()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for r in self.running.iter_mut().rev() {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}

/// The last `lines` lines of a file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
