//! What podid left on scale sets and VMs. The controller keeps a ledger per scale set or VM (a
//! ConfigMap labelled `podid.io/ledger` in its namespace; `podid_core::scaleset::ledger`): the
//! identities it added and has not yet seen removed. It deletes a ledger once it holds nothing
//! there, so after the controller's clean-up every ledger left names exactly what is left.
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use podid_core::scaleset::ledger::{LEDGER_KEY, LEDGER_LABEL};
use podid_core::scaleset::{TargetKind, TargetLedger};
use tokio::time::Instant;

use crate::error::{KubeContext, Result, is_not_found};

/// Identities podid added to one scale set or VM and did not see removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Left {
    pub ledger: TargetLedger,
}

/// Ledgers in `namespace` that still record identities, and the names of unreadable ones.
pub(crate) async fn read(client: &kube::Client, namespace: &str) -> Result<(Vec<Left>, Vec<String>)> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let list = api.list(&ListParams::default().labels(LEDGER_LABEL)).await.doing(|| {
        format!("list the controller's ledgers (ConfigMaps labelled {LEDGER_LABEL}) in {namespace}")
    })?;
    let (mut left, mut unreadable) = (Vec::new(), Vec::new());
    for cm in list.items {
        let name = cm.metadata.name.clone().unwrap_or_default();
        let parsed =
            cm.data.as_ref().and_then(|d| d.get(LEDGER_KEY)).map(|t| serde_json::from_str::<TargetLedger>(t));
        match parsed {
            Some(Ok(ledger)) if !ledger.ledger.is_empty() => left.push(Left { ledger }),
            Some(Ok(_)) => {}
            _ => unreadable.push(name),
        }
    }
    Ok((left, unreadable))
}

/// Waits until the controller has cleared every ledger, or `until`; returns what is left.
pub(crate) async fn wait_cleared(
    client: &kube::Client,
    namespace: &str,
    until: Instant,
) -> Result<Vec<Left>> {
    loop {
        let (left, _) = read(client, namespace).await?;
        if left.is_empty() || Instant::now() >= until {
            return Ok(left);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Deletes every ledger in `namespace` (after the report: nothing else would); returns how many.
pub(crate) async fn delete_all(client: &kube::Client, namespace: &str) -> Result<usize> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default().labels(LEDGER_LABEL))
        .await
        .doing(|| format!("list the controller's ledgers in {namespace}"))?;
    let mut n = 0;
    for cm in list.items {
        let Some(name) = cm.metadata.name else { continue };
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => n += 1,
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).doing(|| format!("delete ledger ConfigMap {namespace}/{name}")),
        }
    }
    Ok(n)
}

/// The report of what is left: every scale set or VM, every identity, and the command that
/// removes it.
pub(crate) fn report(left: &[Left]) -> String {
    let mut out = String::from(
        "warning: identities podid added are still recorded on these scale sets / VMs (the controller did not \
         remove them); remove them by hand:\n",
    );
    for l in left {
        let t = &l.ledger.target;
        out.push_str(&format!("  {t}\n"));
        let cmd = match t.kind {
            TargetKind::ScaleSet => "vmss",
            TargetKind::VirtualMachine => "vm",
        };
        for (id, client_id) in &l.ledger.ledger.added {
            out.push_str(&format!("    {id} (client id {client_id})\n"));
            out.push_str(&format!(
                "      az {cmd} identity remove --subscription {} -g {} -n {} --identities {id}\n",
                t.subscription, t.resource_group, t.name
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use podid_core::scaleset::{Ledger, Target};

    #[test]
    fn the_report_names_each_scale_set_each_identity_and_how_to_remove_it() {
        let id = "/subscriptions/s/resourcegroups/ids/providers/microsoft.managedidentity/userassignedidentities/app";
        let ledger = TargetLedger {
            target: Target {
                subscription: "s".into(),
                resource_group: "MC_rg".into(),
                kind: TargetKind::ScaleSet,
                name: "pool".into(),
            },
            ledger: Ledger { added: [(id.to_string(), "c-1".to_string())].into(), ..Ledger::default() },
        };
        let text = report(&[Left { ledger }]);
        assert!(text.contains("virtualMachineScaleSets/pool"), "{text}");
        assert!(text.contains(&format!("{id} (client id c-1)")), "{text}");
        assert!(
            text.contains(&format!(
                "az vmss identity remove --subscription s -g MC_rg -n pool --identities {id}"
            )),
            "{text}"
        );
    }
}
