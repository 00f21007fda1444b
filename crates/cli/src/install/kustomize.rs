//! The manifests as a kustomize tree, generated from [`render`](super::render) by `make deploy`.
//!
//! ```text
//!  deploy/crds/                  the CRDs (make crds) + a kustomization naming them
//!  deploy/base/                  objects every overlay shares (kube-system namespace)
//!  deploy/overlays/<overlay>/    base + the objects that differ: standard, managed, federated, kubenet
//! ```
//!
//! Objects are whole files rather than patches, so each overlay renders exactly what
//! `podid install` prints (a test compares them through `kubectl kustomize`).
use std::collections::BTreeMap;

use serde_json::Value;

use super::{InstallOptions, Mode, render};
use crate::error::{Error, Result};

/// Header of every generated file.
pub const HEADER: &str = "# Generated from `podid install` by `make deploy`; do not edit.\n";

/// An overlay: its directory name and the options it renders.
pub fn overlays() -> Vec<(&'static str, InstallOptions)> {
    let with = |mode, allow_kubenet| InstallOptions { mode, allow_kubenet, ..InstallOptions::default() };
    vec![
        ("standard", with(Mode::Standard, false)),
        ("managed", with(Mode::Managed, false)),
        ("federated", with(Mode::Federated, false)),
        ("kubenet", with(Mode::Standard, true)),
    ]
}

fn is_crd(o: &Value) -> bool {
    o["kind"] == "CustomResourceDefinition"
}

/// `<kind>-<namespace>-<name>.yaml`, lower case.
fn file_name(o: &Value) -> String {
    let kind = o["kind"].as_str().unwrap_or("object").to_ascii_lowercase();
    let name = o["metadata"]["name"].as_str().unwrap_or("unnamed");
    match o["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind}-{ns}-{name}.yaml"),
        None => format!("{kind}-{name}.yaml"),
    }
}

fn yaml(o: &Value) -> Result<String> {
    let body = serde_saphyr::to_string(o).map_err(|e| Error::Serialize(e.to_string()))?;
    Ok(format!("{HEADER}{body}"))
}

/// A kustomization of directories `bases` and files `resources`. Directories go under `bases`
/// (deprecated in kustomize v5 but accepted) so kubectl 1.20's kustomize v2 reads the tree too.
fn kustomization(bases: &[String], resources: &[String]) -> String {
    let mut s = format!("{HEADER}apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n");
    for (field, items) in [("bases", bases), ("resources", resources)] {
        if !items.is_empty() {
            s.push_str(&format!("{field}:\n"));
            for r in items {
                s.push_str(&format!("- {r}\n"));
            }
        }
    }
    s
}

/// Every generated file under `deploy/`, keyed by its path relative to `deploy/`.
pub fn tree() -> Result<BTreeMap<String, String>> {
    let rendered: Vec<(&str, Vec<Value>)> = overlays()
        .into_iter()
        .map(|(name, opts)| {
            render(&opts).map(|objs| (name, objs.into_iter().filter(|o| !is_crd(o)).collect()))
        })
        .collect::<Result<_>>()?;
    let shared: Vec<Value> = rendered
        .first()
        .map(|(_, objs)| {
            objs.iter().filter(|o| rendered.iter().all(|(_, other)| other.contains(o))).cloned().collect()
        })
        .unwrap_or_default();
    let mut files = BTreeMap::new();
    files.insert(
        "crds/kustomization.yaml".to_string(),
        kustomization(&[], &["aadpodidentity.k8s.io.yaml".into()]),
    );
    let mut base = Vec::new();
    for o in &shared {
        let f = file_name(o);
        files.insert(format!("base/{f}"), yaml(o)?);
        base.push(f);
    }
    files.insert("base/kustomization.yaml".into(), kustomization(&[], &base));
    for (name, objs) in &rendered {
        let bases = ["../../crds".to_string(), "../../base".to_string()];
        let mut resources = Vec::new();
        for o in objs.iter().filter(|o| !shared.contains(o)) {
            let f = file_name(o);
            files.insert(format!("overlays/{name}/{f}"), yaml(o)?);
            resources.push(f);
        }
        files.insert(format!("overlays/{name}/kustomization.yaml"), kustomization(&bases, &resources));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_holds_only_what_every_overlay_shares() {
        let t = tree().unwrap();
        assert!(t.contains_key("base/serviceaccount-kube-system-podid-nmi.yaml"), "{:?}", t.keys());
        assert!(t.contains_key("overlays/standard/deployment-kube-system-mic.yaml"));
        assert!(!t.keys().any(|k| k.starts_with("overlays/federated/deployment-")));
        assert!(t.contains_key("overlays/kubenet/k8spspcapabilities-podid-drop-net-raw.yaml"));
    }
}
