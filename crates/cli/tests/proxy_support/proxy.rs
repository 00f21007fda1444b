//! A real HTTP proxy for tests, on an address the test chooses, that records every request it is
//! asked to carry and carries only those it has a route for.
//!
//! ```text
//!  client ──CONNECT host:port──▶ proxy ── Tunnel(addr): bytes both ways to addr (TLS end to end)
//!                                      └─ Tls(addr):    TLS ended here with a certificate of the
//!                                                       test CA for `host`, re-opened to addr
//!                                                       (the emulator) trusting its CA
//!  client ──GET http://host:port/…──▶ proxy ── Tunnel(addr) only, request sent in origin form
//!  anything else, or no route ──▶ 502, still recorded
//! ```
//!
//! Names in routes never resolve anywhere: the proxy maps them to loopback itself, so a client
//! that wrongly bypassed it would fail to connect instead of reaching something else.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Where the proxy sends what it is asked for `host:port`.
#[derive(Clone)]
pub enum Route {
    /// Raw bytes to this address.
    Tunnel(SocketAddr),
    /// TLS ended at the proxy, re-opened to this address as `localhost`.
    Tls(SocketAddr),
}

/// One request the proxy was asked to carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// `CONNECT`, `GET`, …
    pub method: String,
    pub host: String,
    pub port: u16,
}

/// The test CA and what the proxy needs to end and re-open TLS.
pub struct Mitm {
    /// PEM of the CA clients must trust for the routed names.
    pub ca_pem: String,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl Mitm {
    /// A CA, a server certificate for `names` signed by it, and a client trusting `backend_ca_pem`.
    pub fn new(names: &[&str], backend_ca_pem: &str) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(rcgen::DnType::CommonName, "podid proxy test CA");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut server = rustls::ServerConfig::builder_with_provider(podid_emulator::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf_cert.der().clone()], key)
            .unwrap();
        // HTTP/1.1 only: the bytes are re-sent to the emulator, which speaks nothing else.
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let roots: Vec<CertificateDer<'static>> =
            podid_emulator::crypto::pem_blocks(backend_ca_pem, "CERTIFICATE")
                .into_iter()
                .map(CertificateDer::from)
                .collect();
        let client = podid_emulator::tls::client_config(&roots).unwrap();
        Self {
            ca_pem: ca_cert.pem(),
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        }
    }
}

/// A running proxy; stopped on drop.
pub struct Proxy {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

struct Shared {
    routes: HashMap<(String, u16), Route>,
    mitm: Option<Mitm>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Proxy {
    /// Listens on `bind` with these routes (`(host, port)` → route).
    pub async fn start(bind: SocketAddr, routes: HashMap<(String, u16), Route>, mitm: Option<Mitm>) -> Self {
        let listener =
            TcpListener::bind(bind).await.unwrap_or_else(|e| panic!("proxy cannot listen on {bind}: {e}"));
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared { routes, mitm, seen: seen.clone() });
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Self { addr, seen, task }
    }

    /// `http://addr`, for `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything asked of it so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests named `host`.
    pub fn count(&self, host: &str) -> usize {
        self.seen.lock().unwrap().iter().filter(|s| s.host == host).count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut client: TcpStream, shared: Arc<Shared>) {
    let Some((head, body_start)) = read_head(&mut client).await else { return };
    let Some((method, target, rest)) = parse_head(&head) else { return refuse(client).await };
    let (host, port, path) = match method.as_str() {
        "CONNECT" => match split_host_port(&target, 443) {
            Some((h, p)) => (h, p, String::new()),
            None => return refuse(client).await,
        },
        _ => match target.strip_prefix("http://").and_then(|t| t.split_once('/').or(Some((t, "")))) {
            Some((authority, path)) => match split_host_port(authority, 80) {
                Some((h, p)) => (h, p, format!("/{path}")),
                None => return refuse(client).await,
            },
            None => return refuse(client).await,
        },
    };
    shared.seen.lock().unwrap().push(Seen { method: method.clone(), host: host.clone(), port });
    let Some(route) = shared.routes.get(&(host.to_ascii_lowercase(), port)).cloned() else {
        return refuse(client).await;
    };
    match (method.as_str(), route) {
        ("CONNECT", Route::Tunnel(addr)) => {
            let Ok(mut backend) = TcpStream::connect(addr).await else { return refuse(client).await };
            if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_err() {
                return;
            }
            let _ = backend.write_all(&body_start).await;
            let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
        }
        ("CONNECT", Route::Tls(addr)) => {
            let Some(mitm) = &shared.mitm else { return refuse(client).await };
            let Ok(backend) = TcpStream::connect(addr).await else { return refuse(client).await };
            if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_err() {
                return;
            }
            let Ok(mut front) = mitm.acceptor.accept(client).await else { return };
            let name = ServerName::try_from("localhost").unwrap();
            let Ok(mut back) = mitm.connector.connect(name, backend).await else { return };
            let _ = tokio::io::copy_bidirectional(&mut front, &mut back).await;
        }
        (_, Route::Tunnel(addr)) => {
            let Ok(mut backend) = TcpStream::connect(addr).await else { return refuse(client).await };
            let request = format!("{method} {path} {rest}");
            if backend.write_all(request.as_bytes()).await.is_err()
                || backend.write_all(&body_start).await.is_err()
            {
                return;
            }
            let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
        }
        _ => refuse(client).await,
    }
}

async fn refuse(mut client: TcpStream) {
    let _ =
        client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
}

/// The request head up to the blank line, and whatever was read after it.
async fn read_head(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            return Some((head, buf[end + 4..].to_vec()));
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
    }
}

/// `(method, target, "HTTP/1.1\r\n<headers>\r\n\r\n")`.
fn parse_head(head: &str) -> Option<(String, String, String)> {
    let (line, _) = head.split_once("\r\n")?;
    let mut parts = line.splitn(3, ' ');
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let rest = head.split_once(' ').and_then(|(_, r)| r.split_once(' ')).map(|(_, r)| r.to_string())?;
    Some((method, target, rest))
}

fn split_host_port(authority: &str, default: u16) -> Option<(String, u16)> {
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), default)),
    }
}

/// Forwards every connection to `bind` on to `to`, counting them; stopped on drop.
pub struct Forwarder {
    pub addr: SocketAddr,
    count: Arc<Mutex<usize>>,
    task: JoinHandle<()>,
}

impl Forwarder {
    pub async fn start(bind: SocketAddr, to: SocketAddr) -> Self {
        let listener =
            TcpListener::bind(bind).await.unwrap_or_else(|e| panic!("cannot listen on {bind}: {e}"));
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(Mutex::new(0));
        let counter = count.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                *counter.lock().unwrap() += 1;
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { addr, count, task }
    }

    /// Connections forwarded so far.
    pub fn connections(&self) -> usize {
        *self.count.lock().unwrap()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
