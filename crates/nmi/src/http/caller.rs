//! Who is on the other end of a loopback connection, as the kernel says: the owner (uid) of the
//! caller's socket, looked up by the connection's 4-tuple in `/proc/net/tcp` and `/proc/net/tcp6`
//! of the agent's network namespace (the node's: the agent runs on the host network).
//!
//! `/host/token` acts for any pod, so it is served only to root processes of the node. A socket's
//! owner is the effective uid of the process that created it (`sock_i_uid`), shown as seen from
//! the agent's user namespace; headers and addresses a caller chooses play no part.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// One row of a kernel TCP table (`/proc/<pid>/net/tcp`, `tcp6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpRow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// TCP state (`01` ESTABLISHED, `06` TIME_WAIT, …).
    pub state: u8,
    /// Owner of the socket (`sock_i_uid`), as seen from the reader's user namespace.
    pub uid: u32,
    /// The socket's inode: `/proc/<pid>/fd/*` of its holders link to `socket:[inode]`.
    pub inode: u64,
}

/// The uid owning the socket whose local end is `caller` and remote end `agent`, from the kernel's
/// TCP tables under `proc_net` (normally `/proc/self/net`). `Ok(None)`: no such socket (it closed).
pub fn socket_owner(proc_net: &Path, caller: SocketAddr, agent: SocketAddr) -> std::io::Result<Option<u32>> {
    let agent = canonical(agent);
    Ok(find_socket(proc_net, caller, |row| row.remote == agent)?.map(|row| row.uid))
}

/// The socket of the network namespace whose TCP tables are under `proc_net` with local end
/// `local` that `wanted` accepts (its remote end, its state). `Ok(None)`: there is none.
pub fn find_socket(
    proc_net: &Path,
    local: SocketAddr,
    wanted: impl Fn(&TcpRow) -> bool,
) -> std::io::Result<Option<TcpRow>> {
    let local = canonical(local);
    for table in TABLES {
        let text = read_table(proc_net, table)?;
        let found = text.lines().skip(1).filter_map(parse_row).find(|r| r.local == local && wanted(r));
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Every row of the TCP tables under `proc_net` (IPv4, then IPv6).
pub fn tcp_rows(proc_net: &Path) -> std::io::Result<Vec<TcpRow>> {
    let mut rows = Vec::new();
    for table in TABLES {
        rows.extend(read_table(proc_net, table)?.lines().skip(1).filter_map(parse_row));
    }
    Ok(rows)
}

const TABLES: [&str; 2] = ["tcp", "tcp6"];

/// The text of table `table` under `proc_net`; empty when the kernel has none (no IPv6).
fn read_table(proc_net: &Path, table: &str) -> std::io::Result<String> {
    match std::fs::read_to_string(proc_net.join(table)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        other => other,
    }
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// `sl local rem st queues tr retrnsmt uid timeout inode ...`.
fn parse_row(line: &str) -> Option<TcpRow> {
    let mut fields = line.split_whitespace();
    let local = parse_endpoint(fields.nth(1)?)?;
    let remote = parse_endpoint(fields.next()?)?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    let uid = fields.nth(3)?.parse().ok()?;
    let inode = fields.nth(1)?.parse().ok()?;
    Some(TcpRow { local, remote, state, uid, inode })
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
    fn every_row_is_listed_and_a_missing_ipv6_table_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let a = le_v4([127, 0, 0, 1]);
        let table = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             \x20  0: {a}:0A13 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7 1\n\
             \x20  1: {a}:9C40 {a}:01BB 01 00000000:00000000 00:00000000 00000000     0        0 8 1\n"
        );
        std::fs::write(dir.path().join("tcp"), table).unwrap();
        let rows = tcp_rows(dir.path()).unwrap();
        let seen: Vec<(u16, u16, u8, u64)> =
            rows.iter().map(|r| (r.local.port(), r.remote.port(), r.state, r.inode)).collect();
        assert_eq!(seen, [(2579, 0, 0x0A, 7), (40000, 443, 1, 8)]);
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
