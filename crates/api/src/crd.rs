//! The four CustomResourceDefinitions, generated from the Rust types and adjusted to match
//! upstream's `config/crd` exactly where kube-derive's defaults differ:
//! no status subresource (upstream writes status through the main resource, so a status
//! subresource would silently drop status writes from an upstream controller), `subresources: {}`
//! on the identity and binding kinds, and no required fields.
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceSubresources, JSONSchemaProps, JSONSchemaPropsOrArray,
};
use kube::CustomResourceExt;

use crate::{AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, AzurePodIdentityException};

/// Path of the committed manifests, relative to the repository root.
pub const CRD_MANIFEST_PATH: &str = "deploy/crds/aadpodidentity.k8s.io.yaml";

/// All four CRDs, in upstream's order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        adjust(AzureIdentity::crd(), Some(CustomResourceSubresources::default())),
        adjust(AzureIdentityBinding::crd(), Some(CustomResourceSubresources::default())),
        adjust(AzureAssignedIdentity::crd(), None),
        adjust(AzurePodIdentityException::crd(), None),
    ]
}

fn adjust(
    mut crd: CustomResourceDefinition,
    subresources: Option<CustomResourceSubresources>,
) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        version.subresources = subresources.clone();
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            schema.required = None;
            schema.title = None;
            let mut props = schema.properties.take().unwrap_or_default();
            for field in props.values_mut() {
                strip_defaults(field);
            }
            props.insert("apiVersion".into(), typed("string"));
            props.insert("kind".into(), typed("string"));
            props.insert("metadata".into(), typed("object"));
            schema.properties = Some(props);
        }
    }
    crd
}

fn typed(type_: &str) -> JSONSchemaProps {
    JSONSchemaProps { type_: Some(type_.into()), ..JSONSchemaProps::default() }
}

/// schemars turns `#[serde(default)]` into schema defaults; upstream's schema has none, and a
/// default would make the API server rewrite objects that upstream's controller wrote.
fn strip_defaults(schema: &mut JSONSchemaProps) {
    schema.default = None;
    schema.title = None;
    for child in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        strip_defaults(child);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = schema.items.as_mut() {
        strip_defaults(items);
    }
}

/// Error rendering the manifests.
#[derive(Debug, thiserror::Error)]
#[error("cannot render CRD YAML: {0}")]
pub struct RenderError(String);

/// The manifests as one multi-document YAML file (what `deploy/crds/` holds).
pub fn render_yaml() -> Result<String, RenderError> {
    let mut out =
        String::from("# Generated from the Rust types in crates/api by `make crds`; do not edit.\n");
    for crd in crds() {
        out.push_str("---\n");
        let yaml = serde_saphyr::to_string(&crd).map_err(|e| RenderError(e.to_string()))?;
        out.push_str(&whole_bounds(&yaml));
    }
    Ok(out)
}

/// `minimum: 2147483647.0` as `minimum: 2147483647`. The schema holds bounds as `f64`; written as
/// integers they read back as the same numbers everywhere (kustomize turns them into integers, so
/// the committed file and what kustomize renders from it agree).
fn whole_bounds(yaml: &str) -> String {
    yaml.lines()
        .map(|line| {
            let key = line.trim_start();
            let whole = (key.starts_with("minimum: ") || key.starts_with("maximum: "))
                && line.strip_suffix(".0").is_some_and(|l| l.ends_with(|c: char| c.is_ascii_digit()));
            let line = if whole { &line[..line.len() - 2] } else { line };
            format!("{line}\n")
        })
        .collect()
}
