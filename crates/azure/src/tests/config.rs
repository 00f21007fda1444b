use std::collections::BTreeMap;

use super::*;

const AKS_JSON: &str = r#"{
    "cloud": "AzurePublicCloud",
    "tenantId": "72f988bf-0000-0000-0000-2d7cd011db47",
    "aadClientId": "11111111-2222-3333-4444-555555555555",
    "aadClientSecret": "s3cr3t-value",
    "subscriptionId": "00000000-0000-0000-0000-000000000001",
    "resourceGroup": "MC_rg_cluster_eastus",
    "location": "eastus",
    "vmType": "vmss",
    "subnetName": "aks-subnet",
    "securityGroupName": "aks-agentpool-nsg",
    "useManagedIdentityExtension": false,
    "userAssignedIdentityID": "",
    "useInstanceMetadata": true
}"#;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn parses_aks_json_and_ignores_unknown_keys() {
    let c = CloudConfig::parse(AKS_JSON).unwrap();
    assert_eq!(c.cloud, "AzurePublicCloud");
    assert_eq!(c.client_secret.expose(), "s3cr3t-value");
    assert_eq!(c.resource_group, "MC_rg_cluster_eastus");
    assert_eq!(c.vm_type, "vmss");
    assert!(!c.use_managed_identity_extension);
    assert!(matches!(c.arm_auth().unwrap(), ArmAuth::Secret { .. }));
}

#[test]
fn parses_yaml_with_msi() {
    let c = CloudConfig::parse(
        "cloud: AzureChinaCloud\nsubscriptionId: sub\nresourceGroup: rg\nuseManagedIdentityExtension: true\nuserAssignedIdentityID: 0000-client\n",
    )
    .unwrap();
    assert_eq!(c.cloud(&env(&[])).unwrap().name, "AzureChinaCloud");
    assert_eq!(c.arm_auth().unwrap(), ArmAuth::ManagedIdentity { client_id: Some("0000-client".into()) });
}

#[test]
fn accepts_string_booleans() {
    let c =
        CloudConfig::parse(r#"{"cloud":"AzurePublicCloud","useManagedIdentityExtension":"True"}"#).unwrap();
    assert_eq!(c.arm_auth().unwrap(), ArmAuth::ManagedIdentity { client_id: None });
    let err = CloudConfig::parse(r#"{"useManagedIdentityExtension":"yes please"}"#).unwrap_err();
    assert!(err.to_string().contains("expected true or false"), "{err}");
}

#[test]
fn env_form_matches_upstream_variables() {
    let c = CloudConfig::from_env(&env(&[
        ("CLOUD", "AzurePublicCloud"),
        ("TENANT_ID", "t"),
        ("CLIENT_ID", "c"),
        ("CLIENT_SECRET", "s"),
        ("SUBSCRIPTION_ID", "sub"),
        ("RESOURCE_GROUP", "rg"),
        ("VM_TYPE", "standard"),
        ("USE_MSI", "TRUE"),
        ("USER_ASSIGNED_MSI_CLIENT_ID", "uami"),
    ]));
    assert_eq!(
        (c.subscription_id.as_str(), c.resource_group.as_str(), c.vm_type.as_str()),
        ("sub", "rg", "standard")
    );
    assert!(c.use_managed_identity_extension);
    assert_eq!(c.arm_auth().unwrap(), ArmAuth::ManagedIdentity { client_id: Some("uami".into()) });
    assert!(!CloudConfig::from_env(&env(&[("USE_MSI", "1")])).use_managed_identity_extension);
}

#[test]
fn missing_credentials_say_what_to_set_in_the_right_vocabulary() {
    let err =
        CloudConfig::parse(r#"{"cloud":"AzurePublicCloud"}"#).unwrap().arm_auth().unwrap_err().to_string();
    assert!(err.contains("tenantId is empty"), "{err}");
    assert!(err.contains("aadClientId is empty"), "{err}");
    assert!(err.contains("aadClientSecret is empty"), "{err}");
    assert!(err.contains("useManagedIdentityExtension"), "{err}");
    let err =
        CloudConfig::from_env(&env(&[("CLOUD", "AzurePublicCloud")])).arm_auth().unwrap_err().to_string();
    assert!(err.contains("TENANT_ID is empty") && err.contains("CLIENT_SECRET is empty"), "{err}");
    assert!(err.contains("USE_MSI"), "{err}");
}

#[test]
fn certificate_path_replaces_the_secret() {
    let c = CloudConfig::parse(
        r#"{"cloud":"AzurePublicCloud","tenantId":"t","aadClientId":"c","aadClientCertPath":"/etc/kubernetes/sp.pfx","aadClientCertPassword":"pw"}"#,
    )
    .unwrap();
    let ArmAuth::Certificate { path, password, .. } = c.arm_auth().unwrap() else {
        panic!("not a certificate")
    };
    assert_eq!(path, PathBuf::from("/etc/kubernetes/sp.pfx"));
    assert_eq!(password.expose(), "pw");
}

#[test]
fn unknown_cloud_is_reported_with_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("azure.json");
    std::fs::write(&path, r#"{"cloud":"AzurePrivateCloud"}"#).unwrap();
    let c = CloudConfig::from_file(&path).unwrap();
    let err = c.validate(&env(&[])).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("There is no cloud environment matching the name \"AzurePrivateCloud\""), "{err}");
}

#[test]
fn unreadable_and_malformed_files_are_errors() {
    let err = CloudConfig::from_file(Path::new("/nonexistent/azure.json")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(matches!(CloudConfig::parse("{not json").unwrap_err(), ConfigError::Parse { .. }));
    assert!(matches!(CloudConfig::parse("- a\n- b\n").unwrap_err(), ConfigError::Parse { .. }));
}

#[test]
fn debug_and_display_never_print_secrets() {
    let mut c = CloudConfig::parse(AKS_JSON).unwrap();
    c.client_cert_password = Secret::new("pfx-password");
    let shown = format!("{c:?} {c} {:?} {}", c.arm_auth().unwrap(), c.arm_auth().unwrap());
    assert!(!shown.contains("s3cr3t-value") && !shown.contains("pfx-password"), "{shown}");
    assert!(shown.contains("1111##### REDACTED #####5555"), "{shown}");
}
