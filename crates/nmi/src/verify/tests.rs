use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};

use super::*;

const POD: &str = "0f1e2d3c-4b5a-6978-8a9b-acbdcedf0011";
const OTHER: &str = "11111111-2222-3333-4444-555555555555";

fn metadata() -> SocketAddr {
    "169.254.169.254:80".parse().unwrap()
}

fn agent() -> SocketAddr {
    "10.0.0.4:2579".parse().unwrap()
}

/// `/proc/<pid>/net/tcp` in the kernel's format: one socket `local → remote`.
fn tcp_table(local: SocketAddr, remote: SocketAddr, inode: u64) -> String {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!("{:08X}:{:04X}", u32::from_ne_bytes(v4.ip().octets()), v4.port()),
        SocketAddr::V6(_) => unreachable!("v4 only in these tests"),
    };
    format!(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
         \x20  0: {} {} 01 00000000:00000000 00:00000000 00000000     0        0 {inode} 1\n",
        hex(local),
        hex(remote)
    )
}

/// A fake `/proc` with processes (pid, cgroup file, TCP table).
struct FakeProc(tempfile::TempDir);

impl FakeProc {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("self/net")).unwrap();
        Self(dir)
    }

    fn process(&self, pid: u32, cgroup: &str, tcp: &str) -> &Self {
        let p = self.0.path().join(pid.to_string());
        std::fs::create_dir_all(p.join("net")).unwrap();
        std::fs::write(p.join("cgroup"), cgroup).unwrap();
        std::fs::write(p.join("net/tcp"), tcp).unwrap();
        self
    }

    fn verifier(&self) -> Verifier {
        Verifier::new(self.0.path(), metadata())
    }
}

fn cgroupfs(uid: &str) -> String {
    format!("4:memory:/kubepods/besteffort/pod{uid}/0123abcd\n0::/kubepods/besteffort/pod{uid}/0123abcd\n")
}

#[test]
fn the_cgroupfs_and_systemd_drivers_name_the_pod() {
    assert_eq!(pod_uid(&cgroupfs(POD)).as_deref(), Some(POD));
    let systemd = format!(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-ab.scope\n",
        POD.replace('-', "_")
    );
    assert_eq!(pod_uid(&systemd).as_deref(), Some(POD));
    assert_eq!(pod_uid("0::/system.slice/kubelet.service\n"), None);
    assert_eq!(pod_uid("0::/kubepods/besteffort/podnot-a-uid/x\n"), None);
    assert_eq!(
        unified_path("4:memory:/a\n0::/system.slice/kubelet.service\n"),
        "/system.slice/kubelet.service"
    );
}

#[test]
fn a_socket_in_the_pods_own_namespace_is_the_pods() {
    let peer: SocketAddr = "10.244.1.7:40000".parse().unwrap();
    let fake = FakeProc::new();
    fake.process(100, &cgroupfs(POD), &tcp_table(peer, metadata(), 7));
    assert_eq!(fake.verifier().pod_caller(POD, peer, agent()), Ok(100));
}

#[test]
fn a_direct_call_to_the_agents_address_is_verified_too() {
    let peer: SocketAddr = "10.244.1.7:40001".parse().unwrap();
    let fake = FakeProc::new();
    fake.process(100, &cgroupfs(POD), &tcp_table(peer, agent(), 7));
    assert!(fake.verifier().pod_caller(POD, peer, agent()).is_ok());
}

#[test]
fn a_spoofed_address_is_refused_the_socket_is_in_the_attackers_namespace() {
    let victim_ip: SocketAddr = "10.244.1.7:40000".parse().unwrap();
    let fake = FakeProc::new();
    // The victim's namespace has no such socket; the attacker's has.
    fake.process(100, &cgroupfs(POD), &tcp_table("10.244.1.7:51000".parse().unwrap(), metadata(), 7));
    fake.process(200, &cgroupfs(OTHER), &tcp_table(victim_ip, metadata(), 8));
    let err = fake.verifier().pod_caller(POD, victim_ip, agent()).unwrap_err();
    assert_eq!(err, Unverified::NotInPod { peer: victim_ip, uid: POD.into() });
}

#[test]
fn a_pod_with_no_process_left_cannot_be_verified() {
    let peer: SocketAddr = "10.244.1.7:40000".parse().unwrap();
    let fake = FakeProc::new();
    fake.process(200, &cgroupfs(OTHER), &tcp_table(peer, metadata(), 8));
    let err = fake.verifier().pod_caller(POD, peer, agent()).unwrap_err();
    assert_eq!(err, Unverified::NoProcess { uid: POD.into() });
}

#[test]
fn a_pod_started_after_the_last_scan_is_found_by_a_new_scan() {
    let peer: SocketAddr = "10.244.1.9:40000".parse().unwrap();
    let fake = FakeProc::new();
    fake.process(100, &cgroupfs(OTHER), &tcp_table(peer, metadata(), 7));
    let v = fake.verifier();
    assert!(v.pod_caller(OTHER, "10.244.1.9:1".parse().unwrap(), agent()).is_err());
    fake.process(300, &cgroupfs(POD), &tcp_table(peer, metadata(), 9));
    assert_eq!(v.pod_caller(POD, peer, agent()), Ok(300));
}

#[test]
fn a_reused_pid_is_not_taken_for_the_pod() {
    let peer: SocketAddr = "10.244.1.7:40000".parse().unwrap();
    let fake = FakeProc::new();
    fake.process(100, &cgroupfs(POD), &tcp_table(peer, metadata(), 7));
    let v = fake.verifier();
    assert!(v.pod_caller(POD, peer, agent()).is_ok());
    // The pod is gone and pid 100 now belongs to another pod that holds the same 4-tuple.
    fake.process(100, &cgroupfs(OTHER), &tcp_table(peer, metadata(), 7));
    assert_eq!(v.pod_caller(POD, peer, agent()).unwrap_err(), Unverified::NoProcess { uid: POD.into() });
}

/// The real kernel: a socket this test process holds, on this network namespace, is found with
/// this process as its holder, and a socket nobody holds is not.
#[test]
fn the_kernel_names_the_process_holding_a_node_network_socket() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_accepted, _) = listener.accept().unwrap();
    let v = Verifier::new("/proc", metadata());
    let caller =
        v.node_caller(client.local_addr().unwrap(), listener.local_addr().unwrap()).unwrap().unwrap();
    assert_eq!((caller.pid, caller.pod_uid), (std::process::id(), None));
    let nobody: SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert_eq!(v.node_caller(nobody, listener.local_addr().unwrap()).unwrap(), None);
}

#[test]
fn the_agents_own_cgroup_must_set_it_apart_from_the_node() {
    let fake = FakeProc::new();
    let root = fake.0.path();
    std::fs::write(
        root.join("self/cgroup"),
        "4:memory:/kubepods/pod1/nmi\n0::/kubepods/besteffort/pod1/nmi\n",
    )
    .unwrap();
    assert_eq!(own_cgroup(root).unwrap(), "/kubepods/besteffort/pod1/nmi");

    // In the node's root cgroup, sharing the node's cgroup namespace: it would except everyone.
    std::fs::write(root.join("self/cgroup"), "0::/\n").unwrap();
    std::fs::create_dir_all(root.join("self/ns")).unwrap();
    std::fs::create_dir_all(root.join("1/ns")).unwrap();
    std::os::unix::fs::symlink("cgroup:[4026531835]", root.join("self/ns/cgroup")).unwrap();
    std::os::unix::fs::symlink("cgroup:[4026531835]", root.join("1/ns/cgroup")).unwrap();
    assert!(matches!(own_cgroup(root), Err(OwnCgroupError::Root)));

    // "/" of a cgroup namespace of its own is its own container.
    std::fs::remove_file(root.join("self/ns/cgroup")).unwrap();
    std::os::unix::fs::symlink("cgroup:[4026532999]", root.join("self/ns/cgroup")).unwrap();
    assert_eq!(own_cgroup(root).unwrap(), "/");

    std::fs::write(root.join("self/cgroup"), "4:memory:/x\n").unwrap();
    assert!(matches!(own_cgroup(root), Err(OwnCgroupError::NoUnified)));
}
