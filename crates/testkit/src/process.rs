//! The cluster's child processes, and the watchdog that kills them when the test process dies.
//!
//! ```text
//!   test process ──stdin pipe──▶ watchdog (sh, own process group)
//!        │  "pid 123" per child, "gone 123" when reaped, "released" on a normal drop
//!        ├── etcd            (own process group)
//!        └── kube-apiserver  (own process group)
//! ```
//!
//! On a normal drop the children are killed by their own pid and reaped, then the watchdog is
//! told `released` and exits. A cluster with real nodes also names a teardown script
//! (`teardown <path>`) that the watchdog runs after the kills: what processes leave behind
//! (cgroups, network namespaces, links) is removed even when the test process dies. When the test process dies without dropping (a shared cluster in a
//! `static`, `panic = "abort"`, a signal), the kernel closes the pipe; the watchdog reads EOF,
//! kills every pid it was told about and removes the cluster's folder. A pipe, unlike polling
//! `kill -0 <pid>`, reacts at once and cannot mistake a new process for the test process.
//!
//! A cluster shared by all test processes of a run (see `TestCluster::shared`) must outlive the
//! process that started it: its watchdog, after EOF, also waits for the run's runner process to
//! end (polling `kill -0` every second) before it cleans up.
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};

use crate::{Error, Result};

const WATCHDOG: &str = r#"
dir=$1; outlive=$2; pids=; teardown=
trap '' INT HUP
while IFS= read -r line; do
  case $line in
    "pid "*) pids="$pids ${line#pid }" ;;
    "gone "*) keep=; for p in $pids; do [ "$p" = "${line#gone }" ] || keep="$keep $p"; done; pids=$keep ;;
    "teardown "*) teardown=${line#teardown } ;;
    released) exit 0 ;;
  esac
done
if [ "$outlive" != 0 ]; then
  while kill -0 "$outlive" 2>/dev/null; do sleep 1; done
fi
[ -n "$pids" ] && kill -KILL $pids 2>/dev/null
[ -n "$teardown" ] && [ -f "$teardown" ] && sh "$teardown" >/dev/null 2>&1
rm -rf "$dir"
"#;

/// Child processes that are killed when this value is dropped, or when the test process dies.
#[derive(Debug)]
pub(crate) struct Processes {
    /// Started children, in start order; killed in reverse order.
    children: Vec<Supervised>,
    watchdog: Child,
    /// Write end of the watchdog's stdin; the test process holding it open is the heartbeat.
    heartbeat: Option<ChildStdin>,
}

#[derive(Debug)]
struct Supervised {
    name: String,
    child: Child,
    log: PathBuf,
    /// Builds the command again, for children that can be stopped and started.
    recipe: Option<Recipe>,
    /// Stopped on purpose (see [`Processes::stop`]): not reported as exited.
    stopped: bool,
}

/// How to build a child's command again (same arguments, same ports).
pub(crate) struct Recipe(pub(crate) Box<dyn Fn() -> Command + Send + Sync>);

impl std::fmt::Debug for Recipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recipe")
    }
}

impl Processes {
    /// Starts the watchdog. When the test process dies (and then process `outlive`, if given),
    /// it kills the children and removes `dir`.
    pub(crate) fn new(dir: &Path, outlive: Option<u32>) -> Result<Self> {
        let mut watchdog = Command::new("sh")
            .args(["-c", WATCHDOG, "podid-testkit-watchdog"])
            .arg(dir)
            .arg(outlive.unwrap_or(0).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C meant for the tests must not kill the clean-up.
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Spawn { program: "sh (watchdog)".into(), source })?;
        let heartbeat = watchdog.stdin.take();
        Ok(Self { children: Vec::new(), watchdog, heartbeat })
    }

    /// Starts `command` with stdout and stderr written to `log`, under the watchdog.
    pub(crate) fn spawn(&mut self, name: impl Into<String>, command: Command, log: PathBuf) -> Result<()> {
        let name = name.into();
        let child = Self::launch(&name, command, &log, false)?;
        self.adopt(Supervised { name, child, log, recipe: None, stopped: false });
        Ok(())
    }

    /// Like [`spawn`](Self::spawn), for a child that [`stop`](Self::stop) and
    /// [`start_again`](Self::start_again) can restart from `recipe`.
    pub(crate) fn spawn_recipe(
        &mut self,
        name: impl Into<String>,
        recipe: Recipe,
        log: PathBuf,
    ) -> Result<()> {
        let name = name.into();
        let child = Self::launch(&name, (recipe.0)(), &log, false)?;
        self.adopt(Supervised { name, child, log, recipe: Some(recipe), stopped: false });
        Ok(())
    }

    fn adopt(&mut self, supervised: Supervised) {
        let pid = supervised.child.id();
        self.tell_watchdog(&format!("pid {pid}"));
        tracing::debug!(program = %supervised.name, pid, log = %supervised.log.display(), "Started");
        self.children.push(supervised);
    }

    /// Has the watchdog run the shell script at `path` after killing the children, if this process
    /// dies without dropping (see the module header).
    pub(crate) fn teardown_on_death(&mut self, path: &Path) {
        self.tell_watchdog(&format!("teardown {}", path.display()));
    }

    /// The pid of child `name`, if it is running.
    pub(crate) fn pid_of(&self, name: &str) -> Option<u32> {
        self.children.iter().find(|s| s.name == name && !s.stopped).map(|s| s.child.id())
    }

    /// Kills child `name` (SIGKILL: a crash, not a graceful shutdown) and reaps it.
    pub(crate) fn stop(&mut self, name: &str) -> Result<()> {
        let supervised = self.find(name)?;
        let _ = supervised.child.kill();
        let _ = supervised.child.wait();
        supervised.stopped = true;
        let pid = supervised.child.id();
        self.tell_watchdog(&format!("gone {pid}"));
        Ok(())
    }

    /// Stops every child whose name starts with `prefix` (as [`stop`](Self::stop) does).
    pub(crate) fn stop_all(&mut self, prefix: &str) {
        let names: Vec<String> = self
            .children
            .iter()
            .filter(|s| s.name.starts_with(prefix) && !s.stopped)
            .map(|s| s.name.clone())
            .collect();
        for name in names {
            let _ = self.stop(&name);
        }
    }

    /// Starts stopped child `name` again from its recipe, its output appended to its log.
    pub(crate) fn start_again(&mut self, name: &str) -> Result<()> {
        let supervised = self.find(name)?;
        let recipe = supervised
            .recipe
            .as_ref()
            .ok_or_else(|| Error::Unexpected(format!("{name} cannot be restarted (no recipe)")))?;
        if !supervised.stopped {
            return Err(Error::Unexpected(format!("{name} is running; stop it first")));
        }
        let child = Self::launch(&supervised.name, (recipe.0)(), &supervised.log, true)?;
        supervised.child = child;
        supervised.stopped = false;
        let pid = supervised.child.id();
        self.tell_watchdog(&format!("pid {pid}"));
        tracing::debug!(program = name, pid, "Started again");
        Ok(())
    }

    fn find(&mut self, name: &str) -> Result<&mut Supervised> {
        self.children
            .iter_mut()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::Unexpected(format!("no child process {name}")))
    }

    fn launch(name: &str, mut command: Command, log: &Path, append: bool) -> Result<Child> {
        let io = |source| Error::Io { action: "open log", path: log.to_owned(), source };
        let out = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(log)
            .map_err(io)?;
        let err = out.try_clone().map_err(io)?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Signals meant for the test process (Ctrl-C, a harness killing its group) reach
            // the children through the watchdog, which a shared cluster needs to outlive them.
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Spawn { program: name.into(), source })
    }

    /// Fails if any child has exited, with the end of its log.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        let dead = self.children.iter_mut().filter(|s| !s.stopped).find_map(|supervised| {
            match supervised.child.try_wait() {
                Ok(Some(status)) => Some((supervised.child.id(), exited(supervised, status))),
                _ => None,
            }
        });
        match dead {
            Some((pid, error)) => {
                self.tell_watchdog(&format!("gone {pid}"));
                Err(error)
            }
            None => Ok(()),
        }
    }

    fn tell_watchdog(&mut self, line: &str) {
        let sent = self.heartbeat.as_mut().map(|pipe| writeln!(pipe, "{line}").and_then(|()| pipe.flush()));
        if let Some(Err(error)) = sent {
            tracing::warn!(%error, "Watchdog is gone; children may outlive a crashed test process");
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for supervised in self.children.iter_mut().rev() {
            let pid = supervised.child.id();
            // Already exited is fine: `kill` then only reports an error we ignore.
            let _ = supervised.child.kill();
            let _ = supervised.child.wait();
            tracing::debug!(program = %supervised.name, pid, "Stopped");
        }
        self.tell_watchdog("released");
        self.heartbeat = None;
        let _ = self.watchdog.wait();
    }
}

fn exited(supervised: &Supervised, status: ExitStatus) -> Error {
    Error::Exited { program: supervised.name.clone(), status, log_tail: log_tail(&supervised.log, 25) }
}

/// The last `lines` lines of a log file (empty if unreadable).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
