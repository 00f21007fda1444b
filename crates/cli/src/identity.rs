//! `podid identity add|delete|list`: an `AzureIdentity` (type 0) and its binding `<name>-binding`.
//!
//! `add` validates everything before writing anything — names, the selector (a label value pods can
//! carry), GUIDs, and a resource id exactly as ARM issues it — is idempotent (the same arguments again
//! change nothing), refuses to overwrite a different object of the same name, and removes the
//! identity again if the binding cannot be created. With `--federated` the identity is annotated
//! `podid.io/federated: "true"` and its federated identity credential is made sure of through ARM
//! before anything is written to the cluster (see [`crate::federated`]).
use std::io::Write;
use std::process::ExitCode;

use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use podid_api::guid::validate_guid;
use podid_api::labels::validate_label_value;
use podid_api::resource_id::UserAssignedIdentityId;
use podid_api::{AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec, AzureIdentitySpec};
use serde::Serialize;

use crate::args::{IdentityAdd, ListArgs, ObjectRef};
use crate::azure::{self, Grant};
use crate::error::{Error, KubeContext, Result, is_not_found};
use crate::federated as fed;
use crate::kube_util::{ensure_namespace, list_all, valid_name};
use crate::output::{self, Table};

/// Name of the binding `add` creates for identity `name`.
pub fn binding_name(name: &str) -> String {
    format!("{name}-binding")
}

/// `podid identity add`.
pub(crate) async fn add(client: &kube::Client, args: IdentityAdd, out: &mut impl Write) -> Result<ExitCode> {
    let IdentityAdd {
        object,
        identity_resource_id,
        binding_selector,
        client_id,
        cluster_identity_object_id,
        max_identities,
        federated,
        service_account,
        issuer,
        azure,
    } = args;
    let (ns, name) = (object.namespace.as_str(), object.name.as_str());
    valid_name("identity name", name)?;
    let binding = binding_name(name);
    valid_name("binding name", &binding)?;
    let selector = valid_selector(binding_selector, name)?;
    let resource_id = UserAssignedIdentityId::parse_exact(&identity_resource_id)?;
    if let Some(c) = &client_id {
        validate_guid("--client-id", c)?;
    }
    if let Some(o) = cluster_identity_object_id.as_ref().filter(|_| !federated) {
        validate_guid("--cluster-identity-object-id", o)?;
    }
    if federated {
        valid_name("service account", &service_account)?;
        if let Some(i) = &issuer {
            fed::check_issuer(i)?;
        }
    }
    ensure_namespace(client, ns).await?;

    let identities: Api<AzureIdentity> = Api::namespaced(client.clone(), ns);
    let bindings: Api<AzureIdentityBinding> = Api::namespaced(client.clone(), ns);
    let (existing_identity, existing_binding) = existing(
        client,
        &identities,
        &bindings,
        ns,
        name,
        &selector,
        &resource_id,
        client_id.as_deref(),
        max_identities,
        federated,
    )
    .await?;
    let issuer = match federated {
        true => Some(fed::issuer(client, issuer.as_deref()).await?),
        false => None,
    };

    let needs_arm = federated
        || cluster_identity_object_id.is_some()
        || (existing_identity.is_none() && client_id.is_none());
    let why = if federated {
        "--federated creates the federated identity credential through ARM"
    } else if cluster_identity_object_id.is_some() {
        "--cluster-identity-object-id grants the Managed Identity Operator role through ARM"
    } else {
        "or pass --client-id to skip ARM"
    };
    let arm = if needs_arm { Some(azure::client(&azure, why)?) } else { None };
    let client_id = match (client_id, &existing_identity, &arm) {
        (Some(c), _, _) => c,
        (None, Some(i), _) => i.spec.client_id.clone(),
        (None, None, Some(arm)) => azure::client_id(arm, &resource_id).await?,
        (None, None, None) => return Err(Error::Azure("no ARM client to read the client id with".into())),
    };
    if let (Some(issuer), Some(arm)) = (&issuer, &arm) {
        let subject = podid_core::federation::subject(ns, &service_account);
        let fic = fed::credential_name(ns, &service_account);
        match fed::ensure(arm, &resource_id, &fic, issuer, &subject).await? {
            fed::Credential::Created(n) => writeln!(
                out,
                "created federated identity credential {n} on {resource_id} (issuer {issuer}, subject {subject})"
            )?,
            fed::Credential::Existing(n) => writeln!(
                out,
                "federated identity credential {n} on {resource_id} already accepts issuer {issuer}, subject \
                 {subject}"
            )?,
        }
    }

    let created_identity = match existing_identity {
        None => {
            create_identity(&identities, ns, name, &resource_id, &client_id, federated).await?;
            writeln!(out, "created AzureIdentity {ns}/{name} (client id {client_id})")?;
            true
        }
        Some(_) => {
            writeln!(out, "AzureIdentity {ns}/{name} already exists with these settings")?;
            false
        }
    };
    match existing_binding {
        None => {
            create_binding(&bindings, &identities, created_identity, ns, name, &selector).await?;
            writeln!(
                out,
                "created AzureIdentityBinding {ns}/{binding} (pods labelled aadpodidbinding={selector})"
            )?;
        }
        Some(_) => writeln!(out, "AzureIdentityBinding {ns}/{binding} already exists with these settings")?,
    }
    if federated {
        writeln!(
            out,
            "federated: no Managed Identity Operator grant is needed{} (the controller never assigns a federated \
             identity; pods running as service account {ns}/{service_account} get its tokens)",
            if cluster_identity_object_id.is_some() { ", --cluster-identity-object-id ignored" } else { "" }
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    match (cluster_identity_object_id, &arm) {
        (Some(principal), Some(arm)) => {
            let grant =
                azure::ensure_operator(arm, &resource_id, &principal, azure.subscription_id.as_deref()).await;
            report_grant(grant, &principal, &resource_id, out)
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The binding's selector: `--binding-selector`, else the identity's name; either way a label value
/// pods can carry in `aadpodidbinding`.
fn valid_selector(given: Option<String>, name: &str) -> Result<String> {
    let (selector, hint) = match given {
        Some(s) if s.is_empty() => return Err(Error::Usage("--binding-selector must not be empty".into())),
        Some(s) => (s, "; pods select the binding with this value in their aadpodidbinding label"),
        None => (
            name.to_string(),
            " (the default selector is the identity's name): pass a --binding-selector that pods can carry in \
             their aadpodidbinding label",
        ),
    };
    validate_label_value(&selector).map_err(|source| Error::InvalidLabel {
        flag: "--binding-selector",
        source,
        hint,
    })?;
    Ok(selector)
}

/// What of the pair exists already; an error when it differs from what `add` would create, or
/// when a new identity would pass the cluster's limit.
#[allow(clippy::too_many_arguments)]
async fn existing(
    client: &kube::Client,
    identities: &Api<AzureIdentity>,
    bindings: &Api<AzureIdentityBinding>,
    ns: &str,
    name: &str,
    selector: &str,
    resource_id: &UserAssignedIdentityId,
    client_id: Option<&str>,
    max_identities: usize,
    federated: bool,
) -> Result<(Option<AzureIdentity>, Option<AzureIdentityBinding>)> {
    let binding = binding_name(name);
    let identity = identities.get_opt(name).await.doing(|| format!("read AzureIdentity {ns}/{name}"))?;
    let found_binding =
        bindings.get_opt(&binding).await.doing(|| format!("read AzureIdentityBinding {ns}/{binding}"))?;
    if let Some(b) = &found_binding {
        check_binding(b, ns, name, selector)?;
    }
    match &identity {
        Some(i) => check_identity(i, ns, name, resource_id, client_id, federated)?,
        None => {
            let count = list_all::<AzureIdentity>(client, None, "AzureIdentities").await?.len();
            if count >= max_identities {
                return Err(Error::Limit {
                    count,
                    limit: max_identities,
                    what: "pod identities",
                    flag: "--max-identities",
                });
            }
        }
    }
    Ok((identity, found_binding))
}

async fn create_identity(
    api: &Api<AzureIdentity>,
    ns: &str,
    name: &str,
    resource_id: &UserAssignedIdentityId,
    client_id: &str,
    federated: bool,
) -> Result<()> {
    let annotations = federated
        .then(|| [(podid_api::FEDERATED_ANNOTATION.to_string(), "true".to_string())].into_iter().collect());
    let identity = AzureIdentity {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            annotations,
            ..Default::default()
        },
        spec: AzureIdentitySpec {
            identity_type: 0,
            resource_id: resource_id.to_string(),
            client_id: client_id.into(),
            ..Default::default()
        },
        status: None,
    };
    api.create(&PostParams::default(), &identity)
        .await
        .doing(|| format!("create AzureIdentity {ns}/{name}"))?;
    Ok(())
}

/// Creates the binding; if that fails and `remove_identity_on_failure`, deletes the identity
/// this run created, so nothing half-made stays behind.
async fn create_binding(
    bindings: &Api<AzureIdentityBinding>,
    identities: &Api<AzureIdentity>,
    remove_identity_on_failure: bool,
    ns: &str,
    name: &str,
    selector: &str,
) -> Result<()> {
    let binding = binding_name(name);
    let object = AzureIdentityBinding {
        metadata: ObjectMeta {
            name: Some(binding.clone()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        spec: AzureIdentityBindingSpec {
            azure_identity: name.into(),
            selector: selector.into(),
            ..Default::default()
        },
        status: None,
    };
    let Err(e) = bindings.create(&PostParams::default(), &object).await else { return Ok(()) };
    let cleanup = if !remove_identity_on_failure {
        "nothing was changed".to_string()
    } else {
        match identities.delete(name, &DeleteParams::default()).await {
            Ok(_) => "nothing was left behind; the new AzureIdentity was removed again".to_string(),
            Err(d) => format!(
                "the new AzureIdentity {ns}/{name} could not be removed again ({d}): delete it by hand"
            ),
        }
    };
    Err(e).doing(|| format!("create AzureIdentityBinding {ns}/{binding} ({cleanup})"))
}

/// Prints what became of the role; exit code 2 when it could not be made sure of.
fn report_grant(
    grant: std::result::Result<Grant, String>,
    principal: &str,
    resource_id: &UserAssignedIdentityId,
    out: &mut impl Write,
) -> Result<ExitCode> {
    match grant {
        Ok(Grant::Verified) => writeln!(
            out,
            "cluster identity {principal} already holds Managed Identity Operator on {resource_id}"
        )?,
        Ok(Grant::Granted) => writeln!(
            out,
            "granted Managed Identity Operator on {resource_id} to cluster identity {principal}"
        )?,
        Err(why) => {
            writeln!(
                out,
                "warning: could not make sure cluster identity {principal} holds Managed Identity Operator on \
                 {resource_id} ({why}); the identity is added, but the controller cannot assign it until someone \
                 allowed to grant roles runs: az role assignment create --role \"Managed Identity Operator\" \
                 --assignee-object-id {principal} --scope {resource_id}"
            )?;
            return Ok(ExitCode::from(2));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check_identity(
    i: &AzureIdentity,
    ns: &str,
    name: &str,
    resource_id: &UserAssignedIdentityId,
    client_id: Option<&str>,
    federated: bool,
) -> Result<()> {
    let same_id =
        UserAssignedIdentityId::parse(&i.spec.resource_id).is_ok_and(|r| r.key() == resource_id.key());
    let same_client = client_id.is_none_or(|c| c.eq_ignore_ascii_case(&i.spec.client_id));
    if i.spec.identity_type == 0 && same_id && same_client && i.is_federated() == federated {
        return Ok(());
    }
    Err(Error::Conflict(format!(
        "AzureIdentity {ns}/{name} already exists with different settings (type {}, resourceID {:?}, clientID {:?}, \
         {}federated): delete it first (podid identity delete -n {ns} --name {name}) or choose another name",
        i.spec.identity_type,
        i.spec.resource_id,
        i.spec.client_id,
        if i.is_federated() { "" } else { "not " }
    )))
}

fn check_binding(b: &AzureIdentityBinding, ns: &str, name: &str, selector: &str) -> Result<()> {
    if b.spec.azure_identity == name && b.spec.selector == selector {
        return Ok(());
    }
    Err(Error::Conflict(format!(
        "AzureIdentityBinding {ns}/{} already exists and binds selector {:?} to identity {:?}: delete it first or \
         choose another identity name",
        binding_name(name),
        b.spec.selector,
        b.spec.azure_identity
    )))
}

/// `podid identity delete`.
pub(crate) async fn delete(
    client: &kube::Client,
    object: &ObjectRef,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let (ns, name) = (object.namespace.as_str(), object.name.as_str());
    valid_name("identity name", name)?;
    ensure_namespace(client, ns).await?;
    let binding = binding_name(name);
    let bindings: Api<AzureIdentityBinding> = Api::namespaced(client.clone(), ns);
    let identities: Api<AzureIdentity> = Api::namespaced(client.clone(), ns);
    let mut deleted = 0;
    match bindings.delete(&binding, &DeleteParams::default()).await {
        Ok(_) => {
            deleted += 1;
            writeln!(out, "deleted AzureIdentityBinding {ns}/{binding}")?;
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e).doing(|| format!("delete AzureIdentityBinding {ns}/{binding}")),
    }
    match identities.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            deleted += 1;
            writeln!(
                out,
                "deleted AzureIdentity {ns}/{name} (the controller removes it from the scale sets)"
            )?;
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e).doing(|| format!("delete AzureIdentity {ns}/{name}")),
    }
    if deleted == 0 {
        return Err(Error::NotFound {
            kind: "AzureIdentity",
            namespace: ns.into(),
            name: name.into(),
            hint: " (nor its binding): see podid identity list -A",
        });
    }
    Ok(ExitCode::SUCCESS)
}

/// One row of `identity list`.
#[derive(Debug, Serialize)]
struct Row {
    namespace: String,
    name: String,
    #[serde(rename = "type")]
    identity_type: i64,
    #[serde(rename = "clientID")]
    client_id: String,
    #[serde(rename = "resourceID")]
    resource_id: String,
    bindings: Vec<BindingRow>,
}

#[derive(Debug, Serialize)]
struct BindingRow {
    name: String,
    selector: String,
}

/// `podid identity list`.
pub(crate) async fn list(client: &kube::Client, args: &ListArgs, out: &mut impl Write) -> Result<ExitCode> {
    let ns = output::list_namespace(args);
    let identities = list_all::<AzureIdentity>(client, ns, "AzureIdentities").await?;
    let bindings = list_all::<AzureIdentityBinding>(client, ns, "AzureIdentityBindings").await?;
    let mut rows: Vec<Row> = identities
        .iter()
        .map(|i| {
            let (ins, iname) = (
                i.metadata.namespace.clone().unwrap_or_default(),
                i.metadata.name.clone().unwrap_or_default(),
            );
            let mut bound: Vec<BindingRow> = bindings
                .iter()
                .filter(|b| {
                    b.metadata.namespace.as_deref() == Some(ins.as_str()) && b.spec.azure_identity == iname
                })
                .map(|b| BindingRow {
                    name: b.metadata.name.clone().unwrap_or_default(),
                    selector: b.spec.selector.clone(),
                })
                .collect();
            bound.sort_by(|a, b| a.name.cmp(&b.name));
            Row {
                namespace: ins,
                name: iname,
                identity_type: i.spec.identity_type,
                client_id: i.spec.client_id.clone(),
                resource_id: i.spec.resource_id.clone(),
                bindings: bound,
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    output::render(args.output, &rows, out, || {
        let mut t = Table::new(&["NAMESPACE", "NAME", "TYPE", "CLIENT-ID", "SELECTORS", "RESOURCE-ID"]);
        for r in &rows {
            let selectors: Vec<&str> = r.bindings.iter().map(|b| b.selector.as_str()).collect();
            t.row(vec![
                r.namespace.clone(),
                r.name.clone(),
                r.identity_type.to_string(),
                r.client_id.clone(),
                if selectors.is_empty() { "<none>".into() } else { selectors.join(",") },
                r.resource_id.clone(),
            ]);
        }
        t
    })?;
    Ok(ExitCode::SUCCESS)
}
