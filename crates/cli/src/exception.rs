//! `podid exception add|update|delete|list`: `AzurePodIdentityException`s, whose pods reach IMDS
//! directly.
use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use podid_api::labels::{validate_label_key, validate_label_value};
use podid_api::{AzurePodIdentityException, AzurePodIdentityExceptionSpec};
use serde::Serialize;

use crate::args::{ExceptionArgs, ListArgs, ObjectRef};
use crate::error::{Error, KubeContext, Result, is_not_found};
use crate::kube_util::{ensure_namespace, list_all, valid_name};
use crate::output::{self, Table};

/// Parses `k=v,k2=v2` (at least one pair; keys unique; keys and values as Kubernetes allows them
/// on a pod, since the exception matches pod labels).
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(Error::Usage(format!(
                "--pod-labels: {pair:?} is not key=value (example: app=mic,tier=node)"
            )));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(Error::Usage(format!("--pod-labels: {pair:?} has an empty key")));
        }
        let invalid = |source| Error::InvalidLabel { flag: "--pod-labels", source, hint: "" };
        validate_label_key(k).map_err(invalid)?;
        validate_label_value(v).map_err(invalid)?;
        if labels.insert(k.to_string(), v.to_string()).is_some() {
            return Err(Error::Usage(format!("--pod-labels: key {k:?} is given twice")));
        }
    }
    if labels.is_empty() {
        return Err(Error::Usage("--pod-labels needs at least one key=value pair (example: app=mic)".into()));
    }
    Ok(labels)
}

fn api(client: &kube::Client, ns: &str) -> Api<AzurePodIdentityException> {
    Api::namespaced(client.clone(), ns)
}

/// `podid exception add`.
pub(crate) async fn add(
    client: &kube::Client,
    args: &ExceptionArgs,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let (ns, name) = (args.object.namespace.as_str(), args.object.name.as_str());
    valid_name("exception name", name)?;
    let labels = parse_labels(&args.pod_labels)?;
    ensure_namespace(client, ns).await?;
    let api = api(client, ns);
    if let Some(existing) =
        api.get_opt(name).await.doing(|| format!("read AzurePodIdentityException {ns}/{name}"))?
    {
        if existing.spec.pod_labels == labels {
            writeln!(out, "AzurePodIdentityException {ns}/{name} already exists with these labels")?;
            return Ok(ExitCode::SUCCESS);
        }
        return Err(Error::Conflict(format!(
            "AzurePodIdentityException {ns}/{name} already exists with other pod labels {}: use podid exception update",
            show(&existing.spec.pod_labels)
        )));
    }
    let count =
        list_all::<AzurePodIdentityException>(client, None, "AzurePodIdentityExceptions").await?.len();
    if count >= args.max_exceptions {
        return Err(Error::Limit {
            count,
            limit: args.max_exceptions,
            what: "pod identity exceptions",
            flag: "--max-exceptions",
        });
    }
    let object = AzurePodIdentityException {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some(ns.into()), ..Default::default() },
        spec: AzurePodIdentityExceptionSpec { pod_labels: labels.clone(), ..Default::default() },
        status: None,
    };
    api.create(&PostParams::default(), &object)
        .await
        .doing(|| format!("create AzurePodIdentityException {ns}/{name}"))?;
    writeln!(out, "created AzurePodIdentityException {ns}/{name} (pods with any of {})", show(&labels))?;
    Ok(ExitCode::SUCCESS)
}

/// `podid exception update`.
pub(crate) async fn update(
    client: &kube::Client,
    args: &ExceptionArgs,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let (ns, name) = (args.object.namespace.as_str(), args.object.name.as_str());
    valid_name("exception name", name)?;
    let labels = parse_labels(&args.pod_labels)?;
    ensure_namespace(client, ns).await?;
    let api = api(client, ns);
    let Some(mut existing) =
        api.get_opt(name).await.doing(|| format!("read AzurePodIdentityException {ns}/{name}"))?
    else {
        return Err(Error::NotFound {
            kind: "AzurePodIdentityException",
            namespace: ns.into(),
            name: name.into(),
            hint: ": create it with podid exception add",
        });
    };
    if existing.spec.pod_labels == labels {
        writeln!(out, "AzurePodIdentityException {ns}/{name} already has these labels")?;
        return Ok(ExitCode::SUCCESS);
    }
    existing.spec.pod_labels = labels.clone();
    api.replace(name, &PostParams::default(), &existing)
        .await
        .doing(|| format!("update AzurePodIdentityException {ns}/{name}"))?;
    writeln!(out, "updated AzurePodIdentityException {ns}/{name} (pods with any of {})", show(&labels))?;
    Ok(ExitCode::SUCCESS)
}

/// `podid exception delete`.
pub(crate) async fn delete(
    client: &kube::Client,
    object: &ObjectRef,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let (ns, name) = (object.namespace.as_str(), object.name.as_str());
    valid_name("exception name", name)?;
    ensure_namespace(client, ns).await?;
    match api(client, ns).delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            writeln!(out, "deleted AzurePodIdentityException {ns}/{name}")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if is_not_found(&e) => Err(Error::NotFound {
            kind: "AzurePodIdentityException",
            namespace: ns.into(),
            name: name.into(),
            hint: ": see podid exception list -A",
        }),
        Err(e) => Err(e).doing(|| format!("delete AzurePodIdentityException {ns}/{name}")),
    }
}

#[derive(Debug, Serialize)]
struct Row {
    namespace: String,
    name: String,
    #[serde(rename = "podLabels")]
    pod_labels: BTreeMap<String, String>,
}

/// `podid exception list`.
pub(crate) async fn list(client: &kube::Client, args: &ListArgs, out: &mut impl Write) -> Result<ExitCode> {
    let ns = output::list_namespace(args);
    let mut rows: Vec<Row> = list_all::<AzurePodIdentityException>(client, ns, "AzurePodIdentityExceptions")
        .await?
        .into_iter()
        .map(|e| Row {
            namespace: e.metadata.namespace.unwrap_or_default(),
            name: e.metadata.name.unwrap_or_default(),
            pod_labels: e.spec.pod_labels,
        })
        .collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    output::render(args.output, &rows, out, || {
        let mut t = Table::new(&["NAMESPACE", "NAME", "POD-LABELS"]);
        for r in &rows {
            t.row(vec![r.namespace.clone(), r.name.clone(), show(&r.pod_labels)]);
        }
        t
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `k=v,k2=v2`.
pub(crate) fn show(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_with_spaces_and_trailing_commas() {
        let labels = parse_labels(" app = mic , tier=node,").unwrap();
        assert_eq!(show(&labels), "app=mic,tier=node");
        assert_eq!(parse_labels("k=").unwrap()["k"], "", "an empty value is a value");
        assert_eq!(
            show(&parse_labels("kubernetes.azure.com/managedby=aks").unwrap()),
            "kubernetes.azure.com/managedby=aks"
        );
    }

    #[test]
    fn labels_no_pod_can_carry_are_refused() {
        let err = parse_labels("app=bad value").unwrap_err().to_string();
        assert!(err.starts_with("invalid --pod-labels: \"bad value\" is not a valid label value"), "{err}");
        let err = parse_labels("bad key=x").unwrap_err().to_string();
        assert!(err.starts_with("invalid --pod-labels: \"bad key\" is not a valid label key"), "{err}");
        let long = format!("app={}", "v".repeat(64));
        assert!(parse_labels(&long).unwrap_err().to_string().contains("at most 63"));
    }
}
