//! Shared helpers: the shared test cluster, running the CLI in process, and the emulator's ARM
//! settings as flags.
#![allow(dead_code)]

use std::process::ExitCode;

use clap::Parser;
use podid_cli::{Cli, Error, run};
use podid_emulator::config::builtin::{ADMIN_APP, APP_IDENTITY};
use podid_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use podid_testkit::TestCluster;

/// The cluster this test binary shares, and a fresh namespace in it.
pub async fn setup(prefix: &str) -> (&'static TestCluster, kube::Client, String) {
    podid_azure::install_crypto_provider();
    let cluster = TestCluster::shared().await.expect("test cluster starts");
    let ns = cluster.namespace(prefix).await.expect("namespace");
    (cluster, cluster.client().expect("client"), ns)
}

/// What one CLI run returned and printed.
pub struct Outcome {
    pub result: Result<ExitCode, Error>,
    pub out: String,
}

impl Outcome {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(self) -> String {
        match self.result {
            Ok(code) => assert_eq!(code, ExitCode::SUCCESS, "exit code; output:\n{}", self.out),
            Err(e) => panic!("command failed: {e}\noutput:\n{}", self.out),
        }
        self.out
    }

    /// Asserts failure and returns the error line.
    #[track_caller]
    pub fn err(self) -> String {
        match self.result {
            Ok(code) => panic!("command succeeded ({code:?}) but should fail; output:\n{}", self.out),
            Err(e) => {
                let line = e.to_string();
                assert!(!line.contains('\n'), "error is one line: {line}");
                line
            }
        }
    }
}

/// Runs `podid ARGS…` in process.
pub async fn podid(client: &kube::Client, args: &[&str]) -> Outcome {
    let cli = Cli::try_parse_from(std::iter::once("podid").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("arguments {args:?} parse: {e}"));
    let mut out = Vec::new();
    let result = run(cli, client.clone(), &mut out).await;
    Outcome { result, out: String::from_utf8(out).expect("utf-8 output") }
}

/// A user-assigned identity id in the emulator's default subscription.
pub fn resource_id(name: &str) -> String {
    format!(
        "/subscriptions/1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f/resourcegroups/podid-identities/providers/\
         Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )
}

/// A running emulator and the flags that point the CLI at it as `app`.
pub struct Azure {
    pub emu: RunningEmulator,
}

impl Azure {
    pub async fn start() -> Self {
        Self { emu: Emulator::start(EmulatorConfig::default()).await.expect("emulator starts") }
    }

    /// `--arm-endpoint … --azure-client-secret …` for application `app`.
    pub fn flags(&self, app: &str) -> Vec<String> {
        let info = self.emu.info();
        let app = &info.applications[app];
        vec![
            "--arm-endpoint".into(),
            self.emu.arm_url(),
            "--aad-authority".into(),
            self.emu.login_url(),
            "--trusted-ca-file".into(),
            self.emu.ca_pem_path().display().to_string(),
            "--tenant-id".into(),
            self.emu.tenant_id(),
            "--azure-client-id".into(),
            app.client_id.clone(),
            "--azure-client-secret".into(),
            app.secrets[0].clone(),
        ]
    }

    pub fn admin_flags(&self) -> Vec<String> {
        self.flags(ADMIN_APP)
    }

    /// The id of the emulator's `podid-app` identity.
    pub fn app_identity(&self) -> podid_emulator::IdentityInfo {
        self.emu.info().identities[APP_IDENTITY].clone()
    }
}
