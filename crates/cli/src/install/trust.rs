//! Where Azure is and whom to trust: the ARM and Entra ID endpoints, the IMDS endpoint, and an
//! extra CA, for sovereign and air-gapped clouds (and for the emulator in podid's own tests).
//!
//! The CA is rendered as ConfigMap `podid-trusted-ca` (a CA certificate is public) and mounted
//! read-only into the controller and the agent, which add it to the system's roots
//! (`--trusted-ca-file`).
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, ConfigMapVolumeSource, Volume, VolumeMount};

use super::{InstallOptions, meta};

/// Name of the ConfigMap holding the extra CA.
pub const TRUSTED_CA_CONFIGMAP: &str = "podid-trusted-ca";
const KEY: &str = "ca.crt";
const MOUNT_DIR: &str = "/etc/podid/trusted-ca";

/// The controller's flags for the endpoints and the CA.
pub(crate) fn controller_args(opts: &InstallOptions) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(arm) = &opts.arm_endpoint {
        args.push(format!("--arm-endpoint={arm}"));
    }
    args.extend(common_args(opts));
    args
}

/// The agent's flags for the endpoints and the CA.
pub(crate) fn agent_args(opts: &InstallOptions) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(imds) = &opts.imds_endpoint {
        args.push(format!("--imds-endpoint={imds}"));
    }
    args.extend(common_args(opts));
    args
}

fn common_args(opts: &InstallOptions) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(aad) = &opts.aad_authority {
        args.push(format!("--aad-authority={aad}"));
    }
    if opts.trusted_ca_pem.is_some() {
        args.push(format!("--trusted-ca-file={MOUNT_DIR}/{KEY}"));
    }
    args
}

/// The ConfigMap of the extra CA, if one is given.
pub(crate) fn config_map(opts: &InstallOptions) -> Option<ConfigMap> {
    let pem = opts.trusted_ca_pem.as_ref()?;
    Some(ConfigMap {
        metadata: meta(TRUSTED_CA_CONFIGMAP, Some(&opts.namespace), None),
        data: Some(BTreeMap::from([(KEY.to_owned(), pem.clone())])),
        ..Default::default()
    })
}

/// Its volume and read-only mount, if a CA is given.
pub(crate) fn volume(opts: &InstallOptions) -> Option<(Volume, VolumeMount)> {
    opts.trusted_ca_pem.as_ref()?;
    let volume = Volume {
        name: "trusted-ca".into(),
        config_map: Some(ConfigMapVolumeSource { name: TRUSTED_CA_CONFIGMAP.into(), ..Default::default() }),
        ..Default::default()
    };
    let mount = VolumeMount {
        name: "trusted-ca".into(),
        mount_path: MOUNT_DIR.into(),
        read_only: Some(true),
        ..Default::default()
    };
    Some((volume, mount))
}
