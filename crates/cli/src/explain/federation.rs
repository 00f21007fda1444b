//! The federation chain of `explain pod` (docs/federated.md): why the identity is federated, the
//! pod's service account and the subject it yields, the issuer, and whether the user-assigned
//! identity has a matching federated identity credential (when ARM credentials are set).
//!
//! ```text
//!  identity federated? ─▶ service account ─▶ subject ─▶ issuer ─▶ FIC on the identity (ARM)?
//! ```
//! The decision itself is podid-core's ([`podid_core::decision::decide`]), the one the agent
//! makes; this module only describes a federated answer.
use podid_api::resource_id::UserAssignedIdentityId;
use podid_api::{AzureIdentity, FEDERATED_ANNOTATION, TOKEN_EXCHANGE_AUDIENCE};
use podid_core::PodView;
use podid_core::federation::subject;

use super::key;
use crate::args::ExplainPod;
use crate::{azure, federated};

/// The chain's lines, and what is missing for Entra ID to accept the exchange (if known).
#[derive(Debug, Default)]
pub(super) struct Chain {
    pub lines: Vec<String>,
    pub missing: Option<String>,
}

/// Describes how `pod` gets federated `identity`'s tokens; reads the issuer and (if possible) the
/// identity's federated credentials.
pub(super) async fn chain(
    client: &kube::Client,
    args: &ExplainPod,
    pod: &PodView,
    identity: &AzureIdentity,
) -> Chain {
    let mut c = Chain::default();
    c.lines.push(if identity.is_federated() {
        format!("identity {} is federated: annotated {FEDERATED_ANNOTATION}: \"true\"", key(identity))
    } else {
        format!(
            "identity {} is federated because the agent runs with --operation-mode=federated (every type-0 \
             identity; the CLI cannot see the agent's flag: this follows --mode federated)",
            key(identity)
        )
    });
    c.lines.push(
        "no AzureAssignedIdentity and nothing on the scale set: the agent exchanges a token of the pod's own \
         service account at Entra ID"
            .into(),
    );
    let (ns, sa) = (&pod.key.namespace, &pod.service_account);
    let subject = subject(ns, sa);
    c.lines
        .push(format!("service account {ns}/{sa} → subject {subject}, audience {TOKEN_EXCHANGE_AUDIENCE}"));
    c.lines.push(match identity.spec.tenant_id.as_str() {
        "" => {
            format!("client id {}, tenant: the agent's (--tenant-id / azure.json)", identity.spec.client_id)
        }
        t => format!("client id {}, tenant {t}", identity.spec.client_id),
    });
    let issuer = match &args.issuer {
        Some(given) => federated::check_issuer(given).map_err(|e| e.to_string()),
        None => federated::discover_issuer(client).await,
    };
    let issuer = match issuer {
        Ok(i) => {
            let from = if args.issuer.is_some() { "--issuer" } else { "the API server's discovery document" };
            c.lines.push(format!("issuer {i} (from {from})"));
            i
        }
        Err(why) => {
            c.lines.push(format!("issuer unknown ({why}): pass --issuer to check the credential"));
            return c;
        }
    };
    c.lines.push(credential_line(args, identity, &issuer, &subject, sa, &mut c.missing).await);
    c
}

/// Whether the identity has a federated identity credential for `issuer`/`subject`.
async fn credential_line(
    args: &ExplainPod,
    identity: &AzureIdentity,
    issuer: &str,
    subject: &str,
    sa: &str,
    missing: &mut Option<String>,
) -> String {
    let id = match UserAssignedIdentityId::parse(&identity.spec.resource_id) {
        Ok(id) => id,
        Err(e) => {
            return format!(
                "federated identity credential not checked: resourceID is not an identity id ({e})"
            );
        }
    };
    let Ok(arm) = azure::client(&args.azure, "explain checks federated credentials through ARM") else {
        return "federated identity credential not checked: no ARM credentials (set AZURE_TENANT_ID, \
                AZURE_CLIENT_ID, AZURE_CLIENT_SECRET)"
            .into();
    };
    let fics = match federated::list(&arm, &id).await {
        Ok(f) => f,
        Err(e) => return format!("federated identity credential not checked: {e}"),
    };
    if let Some(f) = fics.iter().find(|f| federated::matches(f, issuer, subject)) {
        return format!(
            "federated identity credential {} on {id} matches issuer, subject and audience",
            f.name
        );
    }
    let what = format!(
        "no federated identity credential on {id} has issuer {issuer}, subject {subject} and audience \
         {TOKEN_EXCHANGE_AUDIENCE}: add one (podid identity add --federated --service-account {sa} …, or az \
         identity federated-credential create --issuer {issuer} --subject {subject} --audiences \
         {TOKEN_EXCHANGE_AUDIENCE})"
    );
    *missing = Some(what.clone());
    what
}
