//! The demo pointed straight at the emulator's IMDS for a node of the scale set: the three
//! success lines when the identity is on the scale set and may read the node resource group, a
//! failure line naming the step otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use podid_demo::{Args, Demo, DemoError};
use podid_emulator::config::{RoleAssignmentConfig, VmConfig, builtin};
use podid_emulator::{Emulator, EmulatorConfig, RunningEmulator};

const APP_CLIENT: &str = "a99c11e0-0000-4000-8000-000000a99001";

/// The default world plus one VM in the node resource group, with `podid-app` on the scale set
/// when `assigned`, and Virtual Machine Contributor on the node resource group when `granted`.
async fn emulator(assigned: bool, granted: bool) -> RunningEmulator {
    let mut config = EmulatorConfig::default();
    config.virtual_machines.push(VmConfig {
        name: "jumpbox".into(),
        resource_group: builtin::NODE_RESOURCE_GROUP.into(),
        system_assigned: false,
        identities: vec![],
    });
    if assigned {
        config.scale_sets[0].identities.push(builtin::APP_IDENTITY.into());
    }
    if granted {
        config.role_assignments.push(RoleAssignmentConfig {
            principal: builtin::APP_IDENTITY.into(),
            role: "Virtual Machine Contributor".into(),
            scope: format!("resourceGroups/{}", builtin::NODE_RESOURCE_GROUP),
        });
    }
    Emulator::start(config).await.unwrap()
}

fn demo_for(emulator: &RunningEmulator, client_id: &str) -> Demo {
    let imds = emulator.imds_urls().into_values().next().unwrap();
    let args = Args::try_parse_from([
        "podid-demo",
        "--subscriptionid",
        &emulator.subscription_id(),
        "--clientid",
        client_id,
        "--resourcegroup",
        builtin::NODE_RESOURCE_GROUP,
        "--imds-endpoint",
        &imds,
        "--arm-endpoint",
        &emulator.arm_url(),
        "--ca-file",
        &emulator.ca_pem_path().display().to_string(),
        "--once",
    ])
    .unwrap();
    Demo::new(args).unwrap()
}

#[tokio::test]
async fn prints_upstreams_three_success_lines_for_an_assigned_identity() {
    let emulator = emulator(true, true).await;
    let lines = demo_for(&emulator, APP_CLIENT).round().await.unwrap();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("successfully acquired a token using the MSI, msiEndpoint(http://127.0.0.1:")
            && lines[0].ends_with(&format!("/metadata/identity/oauth2/token), clientID({APP_CLIENT})")),
        "{lines:?}"
    );
    assert_eq!(lines[1], "successfully doARMOperations vm count 1", "{lines:?}");
    assert!(lines[2].starts_with("successfully made GET on instance metadata, {"), "{lines:?}");
    emulator.shutdown().await;
}

#[tokio::test]
async fn an_identity_not_on_the_node_fails_at_the_token_step() {
    let emulator = emulator(false, true).await;
    let err = demo_for(&emulator, APP_CLIENT).round().await.unwrap_err();
    assert!(matches!(err, DemoError::Token { .. }), "{err}");
    assert!(err.to_string().starts_with("failed to acquire a token using the MSI"), "{err}");
    emulator.shutdown().await;
}

#[tokio::test]
async fn an_identity_without_a_role_sees_no_vms_as_arm_filters_lists_by_permission() {
    let emulator = emulator(true, false).await;
    let lines = demo_for(&emulator, APP_CLIENT).round().await.unwrap();
    assert_eq!(lines[1], "successfully doARMOperations vm count 0", "{lines:?}");
    emulator.shutdown().await;
}

#[tokio::test]
async fn an_unknown_resource_group_fails_at_the_arm_step() {
    let emulator = emulator(true, true).await;
    let mut demo = demo_for(&emulator, APP_CLIENT);
    demo = demo.with_resource_group("no-such-group");
    let err = demo.round().await.unwrap_err();
    assert!(matches!(err, DemoError::Arm(_)), "{err}");
    assert!(err.to_string().starts_with("failed doARMOperations: "), "{err}");
    emulator.shutdown().await;
}

#[test]
fn the_binary_exits_non_zero_with_one_failure_line_when_imds_is_unreachable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_podid-demo"))
        .args(["--subscriptionid", "s", "--clientid", APP_CLIENT, "--resourcegroup", "rg"])
        .args(["--imds-endpoint", "http://127.0.0.1:9", "--once"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("failed to acquire a token using the MSI, msiEndpoint(http://127.0.0.1:9/"),
        "{stdout}"
    );
}
