//! Process scaffolding shared by `podid-mic` and `podid-nmi`:
//! - [`watch::drive`]: a kube-runtime watch whose events become plain index changes, skipping
//!   objects that cannot be decoded;
//! - [`admin`]: `/healthz`, `/readyz` (named readiness conditions) and `/metrics`;
//! - [`init_logging`] and [`shutdown_signal`].
#![forbid(unsafe_code)]

pub mod admin;
pub mod watch;

/// Go's flag package accepted `-flag` as well as `--flag`; podid's binaries do too, so upstream
/// manifests work unchanged. Rewrites single-dash long flags (not the program name) to `--flag`.
pub fn go_style(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let single_dash_long = a.starts_with('-')
                && !a.starts_with("--")
                && a.len() > 2
                && a.as_bytes()[1].is_ascii_alphabetic();
            if i > 0 && single_dash_long { format!("-{a}") } else { a }
        })
        .collect()
}

/// Log output format (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Sets up logging to stderr; `RUST_LOG` overrides `default_filter`.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

#[cfg(test)]
mod tests {
    #[test]
    fn single_dash_long_flags_become_double_dash_and_values_stay() {
        let args = ["prog", "-node", "n1", "-v=2", "--x", "-1", "-"].map(String::from);
        assert_eq!(super::go_style(args), ["prog", "--node", "n1", "--v=2", "--x", "-1", "-"]);
    }
}
