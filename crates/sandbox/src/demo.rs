//! `demo.yaml`: the walkthrough's demo pod (`manifests/demo.yaml`), its variables filled in.
use std::collections::BTreeMap;

/// The manifest, with `$VARIABLES`.
pub const TEMPLATE: &str = include_str!("../manifests/demo.yaml");

/// The variables of [`TEMPLATE`].
#[derive(Debug, Clone)]
pub struct Vars {
    /// `aadpodidbinding` label (the binding's selector).
    pub selector: String,
    /// The locally built demo image.
    pub image: String,
    /// Subscription of the resource group the demo lists VMs in.
    pub subscription: String,
    /// The identity to get tokens for.
    pub client_id: String,
    /// The resource group the demo lists VMs in (the node resource group: it holds VMs).
    pub resource_group: String,
    /// ARM, as pods reach it.
    pub arm_endpoint: String,
}

/// The manifest with `vars` substituted.
pub fn render(vars: &Vars) -> String {
    let values = BTreeMap::from([
        ("$POD_IDENTITY_NAME", vars.selector.as_str()),
        ("$DEMO_IMAGE", vars.image.as_str()),
        ("$SUBSCRIPTION_ID", vars.subscription.as_str()),
        ("$IDENTITY_CLIENT_ID", vars.client_id.as_str()),
        ("$IDENTITY_RESOURCE_GROUP", vars.resource_group.as_str()),
        ("$ARM_ENDPOINT", vars.arm_endpoint.as_str()),
    ]);
    values.iter().fold(TEMPLATE.to_owned(), |text, (var, value)| text.replace(var, value))
}

/// Whether `logs` hold the walkthrough's three success lines (token, ARM, instance metadata).
pub fn succeeded(logs: &str) -> bool {
    [
        "successfully acquired a token using the MSI",
        "successfully doARMOperations vm count",
        "successfully made GET on instance metadata",
    ]
    .iter()
    .all(|line| logs.contains(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            selector: "my-pod-identity".into(),
            image: "ghcr.io/podid/podid-demo:v0.1.0".into(),
            subscription: "sub".into(),
            client_id: "client".into(),
            resource_group: "rg".into(),
            arm_endpoint: "https://10.250.250.1:1234".into(),
        }
    }

    #[test]
    fn every_variable_is_filled_in() {
        let text = render(&vars());
        assert!(
            !text.lines().filter(|l| !l.trim_start().starts_with('#')).any(|l| l.contains('$')),
            "{text}"
        );
        assert!(text.contains("aadpodidbinding: my-pod-identity") && text.contains("--clientid=client"));
    }

    #[test]
    fn success_needs_all_three_lines() {
        assert!(!succeeded("successfully acquired a token using the MSI, msiEndpoint(x)"));
        assert!(succeeded(
            "successfully acquired a token using the MSI, x\nsuccessfully doARMOperations vm count 1\nsuccessfully made GET on instance metadata, {}"
        ));
    }
}
