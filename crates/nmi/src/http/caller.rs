//! Who is on the other end of a loopback connection, as the kernel says: the owner (uid) of the
//! caller's socket, looked up by the connection's 4-tuple in `/proc/net/tcp` and `/proc/net/tcp6`
//! of the agent's network namespace (the node's: the agent runs on the host network).
//!
//! `/host/token` acts for any pod, so it is served only to root processes of the node. A socket's
//! owner is the effective uid of the process that created it (`sock_i_uid`), shown as seen from
//! the agent's user namespace; headers and addresses a caller chooses play no part.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// The uid owning the socket whose local end is `caller` and remote end `agent`, from the kernel's
/// TCP tables under `proc_net` (normally `/proc/self/net`). `Ok(None)`: no such socket (it closed).
pub fn socket_owner(proc_net: &Path, caller: SocketAddr, agent: SocketAddr) -> std::io::Result<Option<u32>> {
    let (caller, agent) = (canonical(caller), canonical(agent));
    for table in ["tcp", "tcp6"] {
        let text = match std::fs::read_to_string(proc_net.join(table)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if let Some(uid) = text.lines().skip(1).find_map(|line| owner_in_line(line, caller, agent)) {
            return Ok(Some(uid));
        }
    }
    Ok(None)
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// `sl local rem st queues tr retrnsmt uid ...`: the uid when local = `caller`, rem = `agent`.
fn owner_in_line(line: &str, caller: SocketAddr, agent: SocketAddr) -> Option<u32> {
    let mut fields = line.split_whitespace();
    let local = parse_endpoint(fields.nth(1)?)?;
    let remote = parse_endpoint(fields.next()?)?;
    if local != caller || remote != agent {
        return None;
    }
    fields.nth(4)?.parse().ok()
}

/// `0100007F:1F90` (IPv4, the address as the kernel's native-endian u32) or 32 hex digits
/// (IPv6, four native-endian u32 words), then the port in hex.
fn parse_endpoint(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| addr.get(i * 8..i * 8 + 8).and_then(|w| u32::from_str_radix(w, 16).ok());
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?.to_ne_bytes())),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip.to_canonical(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le_v4(ip: [u8; 4]) -> String {
        format!("{:08X}", u32::from_ne_bytes(ip))
    }

    #[test]
    fn finds_the_callers_socket_not_the_agents_accepted_one() {
        let dir = tempfile::tempdir().unwrap();
        let (c, a) = (le_v4([127, 0, 0, 1]), le_v4([127, 0, 0, 1]));
        let table = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             \x20  0: {a}:0A13 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
             \x20  1: {a}:0A13 {c}:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n\
             \x20  2: {c}:9C40 {a}:0A13 01 00000000:00000000 00:00000000 00000000  1000        0 3 1\n"
        );
        std::fs::write(dir.path().join("tcp"), table).unwrap();
        let caller: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let agent: SocketAddr = "127.0.0.1:2579".parse().unwrap();
        assert_eq!(socket_owner(dir.path(), caller, agent).unwrap(), Some(1000));
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:40000".parse().unwrap();
        assert_eq!(socket_owner(dir.path(), mapped, agent).unwrap(), Some(1000), "IPv4-mapped");
        let other: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        assert_eq!(socket_owner(dir.path(), other, agent).unwrap(), None);
    }

    #[test]
    fn parses_ipv6_entries() {
        let words: Vec<String> = [[0u8, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
            .iter()
            .map(|w| format!("{:08X}", u32::from_ne_bytes(*w)))
            .collect();
        let ep = format!("{}:0050", words.concat());
        assert_eq!(parse_endpoint(&ep), Some("[::1]:80".parse().unwrap()));
    }

    #[test]
    fn this_processs_own_loopback_socket_is_found_with_its_uid() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let uid = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Uid:").map(|r| r.split_whitespace().nth(1).unwrap().parse::<u32>().unwrap())
            })
            .unwrap();
        let found = socket_owner(
            Path::new("/proc/self/net"),
            client.local_addr().unwrap(),
            client.peer_addr().unwrap(),
        )
        .unwrap();
        assert_eq!(found, Some(uid));
    }
}
