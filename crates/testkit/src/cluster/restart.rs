//! Faults for tests, on a cluster of their own ([`TestCluster::start`], never the shared one):
//! the API server killed and started again on the same port and etcd, and etcd compacted so that
//! watches resuming from an older resource version get `410 Gone` and must re-list.
//!
//! ```text
//!   cluster.stop_apiserver()?;          SIGKILL: clients see refused connections
//!   cluster.start_apiserver().await?;   same flags, port and etcd; waits for /readyz
//!   cluster.restart_apiserver().await?; both
//!   cluster.compact_etcd().await?;      compacts at etcd's current revision (v3 HTTP gateway)
//! ```
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::TestCluster;
use super::local::{APISERVER, START_TIMEOUT};
use crate::wait::eventually;
use crate::{Error, Result, kubeconfig};

impl TestCluster {
    /// Kills the API server (SIGKILL). Only for a cluster the test kit started.
    pub fn stop_apiserver(&self) -> Result<()> {
        self.local_only("stop the API server")?;
        self.with_processes(|p| p.stop(APISERVER))
    }

    /// Starts the stopped API server again with the same flags, port and etcd, and waits until
    /// it is ready.
    pub async fn start_apiserver(&self) -> Result<()> {
        self.local_only("start the API server")?;
        self.with_processes(|p| p.start_again(APISERVER))?;
        let client = kubeconfig::client(self.admin.clone())?;
        eventually(
            "the restarted API server to become ready (/readyz)",
            START_TIMEOUT,
            Duration::from_millis(100),
            || {
                let alive = self.with_processes(|p| p.check_alive());
                let client = client.clone();
                async move {
                    alive?;
                    Ok(super::bootstrap::readyz(&client).await.then_some(()))
                }
            },
        )
        .await
    }

    /// [`stop_apiserver`](Self::stop_apiserver), then [`start_apiserver`](Self::start_apiserver).
    pub async fn restart_apiserver(&self) -> Result<()> {
        self.stop_apiserver()?;
        self.start_apiserver().await
    }

    /// Compacts etcd at its current revision and returns that revision: every older revision is
    /// gone, so a watch from an older resource version is answered `410 Gone`.
    pub async fn compact_etcd(&self) -> Result<i64> {
        let etcd = self.local_only("compact etcd")?;
        let range = etcd_post(&etcd, "/v3/kv/range", r#"{"key":"AA=="}"#).await?;
        let revision = range
            .pointer("/header/revision")
            .and_then(|r| r.as_str().and_then(|s| s.parse().ok()).or_else(|| r.as_i64()))
            .ok_or_else(|| Error::Unexpected(format!("etcd range answer without a revision: {range}")))?;
        let body = format!(r#"{{"revision":"{revision}","physical":true}}"#);
        etcd_post(&etcd, "/v3/kv/compaction", &body).await?;
        tracing::info!(revision, "etcd compacted");
        Ok(revision)
    }

    fn local_only(&self, what: &str) -> Result<String> {
        self.etcd_url.clone().ok_or_else(|| {
            Error::Unexpected(format!("cannot {what}: the test kit did not start this cluster"))
        })
    }

    pub(crate) fn with_processes<T>(
        &self,
        f: impl FnOnce(&mut crate::process::Processes) -> Result<T>,
    ) -> Result<T> {
        let mut guard =
            self.processes.lock().map_err(|_| Error::Unexpected("process table poisoned".into()))?;
        f(&mut guard)
    }
}

/// POSTs `body` to etcd's v3 HTTP gateway at `base` (`http://127.0.0.1:port`); returns the JSON.
async fn etcd_post(base: &str, path: &str, body: &str) -> Result<serde_json::Value> {
    let unexpected = |what: String| Error::Unexpected(format!("etcd {path}: {what}"));
    let authority = base
        .strip_prefix("http://")
        .filter(|a| a.starts_with("127."))
        .ok_or_else(|| unexpected(format!("not a loopback URL: {base}")))?;
    let mut stream =
        tokio::net::TcpStream::connect(authority).await.map_err(|e| unexpected(e.to_string()))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| unexpected(e.to_string()))?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.map_err(|e| unexpected(e.to_string()))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, rest) = answer.split_once("\r\n\r\n").ok_or_else(|| unexpected("no HTTP answer".into()))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(unexpected(head.lines().next().unwrap_or_default().to_string()));
    }
    // The gateway may answer chunked: the JSON object is between the first `{` and the last `}`.
    let json = match (rest.find('{'), rest.rfind('}')) {
        (Some(a), Some(b)) if a < b => &rest[a..=b],
        _ => return Err(unexpected(format!("no JSON in {rest:?}"))),
    };
    serde_json::from_str(json).map_err(|e| unexpected(e.to_string()))
}
