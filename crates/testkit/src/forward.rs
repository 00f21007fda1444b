//! TCP forwarders: how the real nodes reach services on the host's loopback, and nothing else.
//!
//! ```text
//!   node netns                          host netns
//!   10.250.250.1:P ──podid-forward──▶ 10.200.N.1:P ──podid-forward──▶ 127.0.0.1:P  (API server, emulator)
//!   169.254.169.254:80 ─────────────▶ 10.200.N.1:Q ─────────────────▶ 127.0.0.1:Q  (that node's IMDS)
//! ```
//!
//! A `podid-forward` process serves the pairs of its arguments until it is killed; the test kit
//! starts one per network namespace and exposure, as a child it kills (a node's die with the
//! node's pid namespace).
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

/// One forwarding: connections accepted on `listen` are carried to `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    /// Where to accept.
    pub listen: SocketAddr,
    /// Where to connect.
    pub target: SocketAddr,
}

impl std::fmt::Display for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.listen, self.target)
    }
}

impl std::str::FromStr for Pair {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (l, t) = text.split_once('=').ok_or_else(|| format!("{text:?} is not LISTEN=TARGET"))?;
        let parse = |s: &str| s.trim().parse::<SocketAddr>().map_err(|e| format!("{s:?}: {e}"));
        Ok(Self { listen: parse(l)?, target: parse(t)? })
    }
}

/// Binds `pair.listen` and forwards every connection until the process ends.
pub async fn serve(pair: Pair) -> std::io::Result<()> {
    let listener = TcpListener::bind(pair.listen).await?;
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else { continue };
            let _ = inbound.set_nodelay(true);
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(pair.target).await {
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Ok(())
}

/// The `podid-forward` process: serves `pairs`, prints `ready`, then serves until killed.
pub async fn main(pairs: Vec<Pair>) -> std::io::Result<()> {
    for pair in pairs {
        serve(pair).await.map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", pair.listen)))?;
    }
    let mut out = std::io::stdout();
    std::io::Write::write_all(&mut out, b"ready\n")?;
    std::io::Write::flush(&mut out)?;
    std::future::pending::<()>().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    #[test]
    fn a_pair_is_two_socket_addresses() {
        let pair: Pair = "127.0.0.1:80=10.0.0.1:8080".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((pair.listen.port(), pair.target.to_string().as_str()), (80, "10.0.0.1:8080"));
        assert_eq!(pair.to_string(), "127.0.0.1:80=10.0.0.1:8080");
        assert!("127.0.0.1:80".parse::<Pair>().is_err());
        assert!("x=127.0.0.1:1".parse::<Pair>().is_err());
    }

    #[tokio::test]
    async fn a_forwarder_carries_bytes_both_ways() {
        use tokio::io::AsyncReadExt as _;
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let target = echo.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            if let Ok((mut s, _)) = echo.accept().await {
                let mut buf = [0u8; 4];
                if s.read_exact(&mut buf).await.is_ok() {
                    let _ = s.write_all(&buf).await;
                }
            }
        });
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("{e}"));
        serve(Pair { listen, target }).await.unwrap_or_else(|e| panic!("{e}"));
        let mut c = TcpStream::connect(listen).await.unwrap_or_else(|e| panic!("{e}"));
        c.write_all(b"ping").await.unwrap_or_else(|e| panic!("{e}"));
        let mut back = [0u8; 4];
        c.read_exact(&mut back).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&back, b"ping");
    }
}
