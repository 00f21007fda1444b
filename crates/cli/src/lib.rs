//! The `podid` command as a library: [`run`] takes parsed arguments, a Kubernetes client and an
//! output, so tests drive it in process against a real API server.
//!
//! ```text
//!  Cli ─▶ run ─┬─ identity  add/delete/list  (AzureIdentity + AzureIdentityBinding; ARM lookups)
//!              ├─ exception add/update/delete/list
//!              ├─ explain   pod/identity     (podid-core's decisions, step by step)
//!              ├─ install   print or apply the manifests (no client needed to print)
//!              └─ uninstall identities first, then components, RBAC, CRDs
//! ```
//!
//! The walkthrough on this machine (`make sandbox`) is not part of the shipped CLI: it lives in
//! the `podid-sandbox` crate, which links the emulator and the test kit.
#![forbid(unsafe_code)]

pub mod args;
mod azure;
mod error;
mod exception;
mod explain;
mod federated;
mod identity;
pub mod install;
mod kube_util;
mod output;
mod uninstall;

use std::io::Write;
use std::process::ExitCode;

pub use args::Cli;
pub use error::{Error, Result};
pub use kube_util::ApiServer;

use args::{Command, ExceptionCommand, ExplainCommand, IdentityCommand};

/// Runs one command. `Ok` carries the exit code (non-zero when the command did its main work but
/// could not do everything, e.g. grant a role); `Err` is a failure with one line to print.
pub async fn run(cli: Cli, client: kube::Client, out: &mut impl Write) -> Result<ExitCode> {
    let Cli { kubeconfig: _, connect_timeout: _, command } = cli;
    match command {
        Command::Identity(IdentityCommand::Add(a)) => identity::add(&client, *a, out).await,
        Command::Identity(IdentityCommand::Delete(o)) => identity::delete(&client, &o, out).await,
        Command::Identity(IdentityCommand::List(l)) => identity::list(&client, &l, out).await,
        Command::Exception(ExceptionCommand::Add(a)) => exception::add(&client, &a, out).await,
        Command::Exception(ExceptionCommand::Update(a)) => exception::update(&client, &a, out).await,
        Command::Exception(ExceptionCommand::Delete(o)) => exception::delete(&client, &o, out).await,
        Command::Exception(ExceptionCommand::List(l)) => exception::list(&client, &l, out).await,
        Command::Explain(ExplainCommand::Pod(p)) => explain::pod(&client, &p, out).await,
        Command::Explain(ExplainCommand::Identity(i)) => explain::identity(&client, &i, out).await,
        Command::Install(i) => install::run(&i, Some(&client), out).await,
        Command::Uninstall(u) => uninstall::run(&client, &u, out).await,
    }
}

/// Whether `cli` talks to the API server (`podid install` without `--apply` only prints).
pub fn needs_client(cli: &Cli) -> bool {
    !matches!(&cli.command, Command::Install(i) if !i.apply)
}

/// Runs a command that needs no API server (see [`needs_client`]).
pub async fn run_offline(cli: Cli, out: &mut impl Write) -> Result<ExitCode> {
    match cli.command {
        Command::Install(i) if !i.apply => install::run(&i, None, out).await,
        _ => Err(Error::Usage("this command needs a Kubernetes cluster".into())),
    }
}

/// A Kubernetes client from `--kubeconfig`, else `$KUBECONFIG`/`~/.kube/config`/in-cluster, and
/// where it connects (see [`kube_util::connect`]).
pub async fn kube_client(cli: &Cli) -> Result<(kube::Client, ApiServer)> {
    let timeout = std::time::Duration::from_secs(cli.connect_timeout);
    kube_util::connect(cli.kubeconfig.as_deref(), timeout, &podid_azure::ProxySettings::from_env()).await
}
