//! `podid-node-init`: process 1 of a real node's pid namespace (see `podid_testkit::real`).
//!
//! It reaps every orphan that the kernel hands it (containerd's shims daemonise, so their exit
//! leaves one) and otherwise sleeps. It never exits on its own: the node ends when it is killed,
//! and with it every process of the namespace.
use std::time::Duration;

use rustix::process::{WaitOptions, wait};

fn main() {
    loop {
        match wait(WaitOptions::empty()) {
            Ok(Some(_)) => {}
            // No children at the moment (ECHILD), or interrupted: look again shortly.
            Ok(None) | Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
