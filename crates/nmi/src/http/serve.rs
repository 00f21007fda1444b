//! The token service's listener: HTTP/1.1 and HTTP/2 (prior knowledge) on plain TCP, with every
//! bound of [`Limits`] applied before a request reaches [`crate::app`].
//!
//! ```text
//!  accept ─▶ global budget? ─no─▶ close at once
//!     │ per-source cap? ─no─▶ 429 "too many connections" (at most MAX_REFUSING at a time), close
//!     ▼
//!  connection task: hyper ◀─ Watched IO (marks the first byte of each request head)
//!     │  watchdog: no request in flight → close after header_timeout (counted from accept or
//!     │            from the head's first byte) or idle_timeout (since the last response)
//!     ▼
//!  per request: source's token bucket? ─no─▶ 429 + Retry-After ; else the router, with
//!               ConnectInfo(peer) and [`Connection`] in the request's extensions
//! ```
//!
//! The in-flight count of a connection falls when the response body is dropped (fully written
//! or abandoned), so a slow reader keeps its connection "busy", never idle.
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt;
use tracing::{debug, error};

use super::limits::{ConnectionSlot, Limits, MAX_REFUSING, Refused, Sources};
use super::plain;
use crate::metrics::{Closed, Metrics};

/// Largest request head (request line and headers) read from a caller.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The connection a request came on, in the request's extensions (absent for requests handed
/// to the router in process).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Arrived on the address intercepted traffic is DNATed to (a node address): only this
    /// node's pods are served there.
    pub intercepted: bool,
}

/// The pod a connection was verified to come from (`--verified-callers`), set by its first token
/// request and trusted by its later ones: a TCP connection never changes network namespace.
/// In every request's extensions next to [`Connection`].
#[derive(Clone, Debug, Default)]
pub struct VerifiedPod(pub Arc<std::sync::OnceLock<podid_core::PodKey>>);

/// How the listener is run.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub limits: Limits,
    /// The node address intercepted traffic is DNATed to, if not loopback.
    pub intercepted: Option<IpAddr>,
}

struct Server {
    app: Router,
    sources: Sources,
    metrics: Arc<Metrics>,
    intercepted: Option<IpAddr>,
    builder: auto::Builder<TokioExecutor>,
    refuse_builder: auto::Builder<TokioExecutor>,
    refusing: AtomicUsize,
    shutdown: watch::Receiver<bool>,
    /// Held by every connection task; `serve` returns when all are gone.
    open: watch::Receiver<()>,
}

/// Serves `app` on `listeners` until `shutdown` resolves, then lets open connections finish
/// their requests (graceful shutdown) and returns when the last one has closed.
pub async fn serve(
    listeners: Vec<TcpListener>,
    app: Router,
    options: ServeOptions,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (open_tx, open_rx) = watch::channel(());
    let server = Arc::new(Server {
        app,
        sources: Sources::new(options.limits),
        metrics,
        intercepted: options.intercepted,
        builder: builder(true),
        refuse_builder: builder(false),
        refusing: AtomicUsize::new(0),
        shutdown: stop_rx,
        open: open_rx,
    });
    let mut accepting = tokio::task::JoinSet::new();
    for listener in listeners {
        accepting.spawn(accept_loop(listener, server.clone()));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    while accepting.join_next().await.is_some() {}
    drop(server);
    open_tx.closed().await;
    Ok(())
}

fn builder(keep_alive: bool) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1().keep_alive(keep_alive).max_buf_size(MAX_HEAD_BYTES).timer(TokioTimer::new());
    // The watchdog bounds the time to a request head; hyper's own timer would also close
    // keep-alive connections after the header timeout, which is the idle timeout's job.
    b.http1().header_read_timeout(None);
    b.http2()
        .max_concurrent_streams(32)
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_pending_accept_reset_streams(20)
        .timer(TokioTimer::new());
    b
}

async fn accept_loop(listener: TcpListener, server: Arc<Server>) {
    let mut stop = server.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Most likely EMFILE: the budget is above what the process may open.
                error!(error = %e, "Cannot accept a connection; pausing accepts for 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let slot = server.sources.open(peer.ip(), Instant::now().into_std());
        let conn = |stream: &TcpStream| {
            let local = stream.local_addr().ok()?;
            Some(Connection {
                peer,
                local,
                intercepted: server.intercepted == Some(local.ip().to_canonical()),
            })
        };
        match slot {
            Ok(slot) => {
                let Some(conn) = conn(&stream) else { continue };
                server.metrics.connections.set(server.sources.open_connections() as i64);
                tokio::spawn(serve_connection(stream, conn, Some(slot), server.clone()));
            }
            Err(reason) => {
                server.metrics.connection_refused(reason);
                let answered = reason == Refused::PerSource
                    && server.refusing.fetch_add(1, Ordering::SeqCst) < MAX_REFUSING;
                if let Some(conn) = answered.then(|| conn(&stream)).flatten() {
                    tokio::spawn(serve_connection(stream, conn, None, server.clone()));
                } else {
                    // Every per-source refusal took a turn above; this one is not answered.
                    if reason == Refused::PerSource {
                        server.refusing.fetch_sub(1, Ordering::SeqCst);
                    }
                    debug!(%peer, ?reason, "Connection closed at once");
                    // A reset, not a FIN: no TIME_WAIT left behind for a caller that reconnects
                    // thousands of times a second.
                    let _ = stream.set_zero_linger();
                    drop(stream);
                }
                // A flood is accepted and refused in bursts of thousands; without a turn for the
                // rest of the runtime (whose I/O driver is polled only between task polls), every
                // other connection would wait for the burst to end.
                tokio::task::yield_now().await;
            }
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection: the app if it holds a `slot`, else a 429 for its first request.
async fn serve_connection(
    stream: TcpStream,
    conn: Connection,
    slot: Option<ConnectionSlot>,
    server: Arc<Server>,
) {
    let _open = server.open.clone();
    let activity = Arc::new(Activity::new());
    let verified = VerifiedPod::default();
    let io = TokioIo::new(Watched { inner: stream, activity: activity.clone() });
    let refusing = slot.is_none();
    let svc = {
        let (server, activity) = (server.clone(), activity.clone());
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let guard = InFlight::start(activity.clone());
            let (server, verified) = (server.clone(), verified.clone());
            async move {
                let resp = if refusing {
                    too_many_connections(&server, conn.peer)
                } else {
                    handle(&server, conn, verified, req).await
                };
                Ok::<_, Infallible>(resp.map(move |body| {
                    Body::new(body.map_frame(move |f| {
                        let _in_flight = &guard;
                        f
                    }))
                }))
            }
        })
    };
    let builder = if refusing { &server.refuse_builder } else { &server.builder };
    let mut http = pin!(builder.serve_connection(io, svc));
    let mut watchdog = pin!(activity.watch(server.sources.limits().clone()));
    let mut stop = server.shutdown.clone();
    let mut stopping = false;
    loop {
        tokio::select! {
            r = http.as_mut() => {
                if let Err(e) = r {
                    debug!(peer = %conn.peer, error = %e, "Connection ended with an error");
                }
                break;
            }
            why = watchdog.as_mut() => {
                debug!(peer = %conn.peer, ?why, "Closing a connection: no complete request head, or idle, for too long");
                server.metrics.connection_closed(why);
                break;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                http.as_mut().graceful_shutdown();
            }
        }
    }
    if refusing {
        server.refusing.fetch_sub(1, Ordering::SeqCst);
    }
    drop(slot);
    server.metrics.connections.set(server.sources.open_connections() as i64);
}

async fn handle(
    server: &Server,
    conn: Connection,
    verified: VerifiedPod,
    req: Request<Incoming>,
) -> Response<Body> {
    if let Err(wait) = server.sources.request(conn.peer.ip(), Instant::now().into_std()) {
        server.metrics.throttled.inc();
        let limits = server.sources.limits();
        let mut resp = plain(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "too many requests from {}: more than {} per second (burst {}); retry later (--max-requests-per-second-per-source)",
                conn.peer.ip(),
                limits.requests_per_second,
                limits.request_burst
            ),
        );
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        return resp;
    }
    let mut req = req.map(Body::new);
    req.extensions_mut().insert(ConnectInfo(conn.peer));
    req.extensions_mut().insert(conn);
    req.extensions_mut().insert(verified);
    match server.app.clone().oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

fn too_many_connections(server: &Server, peer: SocketAddr) -> Response<Body> {
    let cap = server.sources.limits().max_connections_per_source;
    let mut resp = plain(
        StatusCode::TOO_MANY_REQUESTS,
        &format!(
            "too many connections from {}: at most {cap} may be open at once (--max-connections-per-source); reuse connections",
            peer.ip()
        ),
    );
    resp.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    resp.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// Where a connection is between requests.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// No request in flight since `since` (accept, or the last response); `head`: bytes of a
    /// request head have arrived since then.
    Waiting { since: Instant, head: bool, fresh: bool },
    /// This many requests in flight.
    Busy(usize),
}

/// A connection's request bookkeeping, shared by its IO, its service and its watchdog.
///
/// Nothing here wakes the watchdog: it looks every `min(header_timeout, idle_timeout)` (and at
/// the deadline it computed), which is often enough to meet every deadline exactly, and keeps the
/// per-request cost at two uncontended locks.
struct Activity {
    phase: Mutex<Phase>,
}

impl Activity {
    fn new() -> Self {
        Self { phase: Mutex::new(Phase::Waiting { since: Instant::now(), head: false, fresh: true }) }
    }

    fn bytes_read(&self) {
        let mut p = self.phase.lock();
        if let Phase::Waiting { since, head: head @ false, fresh } = &mut *p {
            *head = true;
            if !*fresh {
                *since = Instant::now();
            }
        }
    }

    fn request_started(&self) {
        let mut p = self.phase.lock();
        *p = match *p {
            Phase::Busy(n) => Phase::Busy(n + 1),
            Phase::Waiting { .. } => Phase::Busy(1),
        };
    }

    fn request_finished(&self) {
        let mut p = self.phase.lock();
        *p = match *p {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Waiting { since: Instant::now(), head: false, fresh: false },
        };
    }

    /// When the connection is to be closed if nothing changes, and why.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, Closed)> {
        match *self.phase.lock() {
            Phase::Busy(_) => None,
            Phase::Waiting { since, head, fresh } if head || fresh => {
                Some((since + limits.header_timeout, Closed::HeaderTimeout))
            }
            Phase::Waiting { since, .. } => Some((since + limits.idle_timeout, Closed::IdleTimeout)),
        }
    }

    /// Resolves when the connection has overstayed its header or idle timeout. A head that starts
    /// (or a request that ends) between two looks moves the deadline to at least a tick after the
    /// look that sees it, so no deadline is missed or met late.
    async fn watch(&self, limits: Limits) -> Closed {
        let tick = limits.header_timeout.min(limits.idle_timeout);
        let mut sleep = pin!(tokio::time::sleep(tick));
        loop {
            sleep.as_mut().await;
            let now = Instant::now();
            let next = match self.deadline(&limits) {
                Some((at, why)) if at <= now => return why,
                Some((at, _)) => at.min(now + tick),
                None => now + tick,
            };
            sleep.as_mut().reset(next);
        }
    }
}

/// One request of a connection, counted from its head until its response body is dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity.request_started();
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A socket that tells its [`Activity`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
