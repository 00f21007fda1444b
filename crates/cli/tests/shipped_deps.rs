//! The shipped binaries (`podid`, `podid-mic`, `podid-nmi`, `podid-demo`) link neither the Azure
//! emulator nor the test kit: their packages' normal dependency trees name neither crate.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::process::Command;

fn normal_dependencies(package: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "--offline", "--edges", "normal,build", "--prefix", "none", "--package", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn shipped_binaries_depend_on_neither_the_emulator_nor_the_test_kit() {
    for package in ["podid-cli", "podid-mic", "podid-nmi", "podid-demo"] {
        let tree = normal_dependencies(package);
        assert!(tree.lines().any(|l| l.starts_with(package)), "{package}: {tree}");
        for forbidden in ["podid-emulator", "podid-testkit", "podid-sandbox"] {
            assert!(!tree.contains(forbidden), "{package} depends on {forbidden}:\n{tree}");
        }
    }
}

#[test]
fn the_sandbox_is_where_the_emulator_and_the_test_kit_are_linked() {
    let tree = normal_dependencies("podid-sandbox");
    assert!(tree.contains("podid-emulator") && tree.contains("podid-testkit"), "{tree}");
}
