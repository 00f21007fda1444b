//! `GET /metadata/instance[/compute|/network]`: the instance metadata document of the node.

use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode, Uri};
use serde_json::{Value, json};

use super::{NodeState, has_metadata_header, json_response};
use crate::model::{NodeKind, compute_id};

const NEWEST: &[&str] = &["2023-07-01", "2023-11-15", "2024-03-15"];

fn api_version_error(uri: &Uri) -> Option<Response> {
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    let version = query.iter().find(|(k, _)| k == "api-version").map(|(_, v)| v.as_str());
    let msg = match version {
        None | Some("") => {
            "Bad request. api-version was not specified in the request. For more information refer to aka.ms/azureimds"
        }
        Some(v) if v.len() == 10 && v >= "2017-03-01" => return None,
        Some(_) => "Bad request. api-version is invalid. For more information refer to aka.ms/azureimds",
    };
    Some(json_response(StatusCode::BAD_REQUEST, &json!({"error": msg, "newest-versions": NEWEST})))
}

fn document(state: &NodeState) -> Option<Value> {
    let world = state.shared.world.read();
    let node = world.node(&state.node)?;
    let (name, rg, id, vm_id, ip, vmss, tags) = match &node.kind {
        NodeKind::ScaleSetInstance { scale_set_key, instance_id } => {
            let s = world.scale_sets.get(scale_set_key)?;
            let i = s.instances.get(instance_id)?;
            let parent =
                compute_id(&world.subscription_id, &s.resource_group, "virtualMachineScaleSets", &s.name);
            (
                format!("{}_{}", s.name, i.instance_id),
                s.resource_group.clone(),
                format!("{parent}/virtualMachines/{}", i.instance_id),
                i.vm_id.clone(),
                i.private_ip.clone(),
                s.name.clone(),
                s.tags.clone(),
            )
        }
        NodeKind::Vm { vm_key } => {
            let v = world.vms.get(vm_key)?;
            let id = compute_id(&world.subscription_id, &v.resource_group, "virtualMachines", &v.name);
            (
                v.name.clone(),
                v.resource_group.clone(),
                id,
                v.vm_id.clone(),
                v.private_ip.clone(),
                String::new(),
                v.tags.clone(),
            )
        }
    };
    let tags_list: Vec<Value> = tags
        .as_object()
        .map(|m| m.iter().map(|(k, v)| json!({"name": k, "value": v.as_str().unwrap_or_default()})).collect())
        .unwrap_or_default();
    Some(json!({
        "compute": {
            "azEnvironment": "AzurePublicCloud",
            "location": world.location,
            "name": name,
            "osType": "Linux",
            "provider": "Microsoft.Compute",
            "resourceGroupName": rg,
            "resourceId": id,
            "subscriptionId": world.subscription_id,
            "tagsList": tags_list,
            "vmId": vm_id,
            "vmScaleSetName": vmss,
            "vmSize": "Standard_DS2_v2",
            "zone": "",
            "osProfile": {"computerName": state.node.as_ref(), "adminUsername": "azureuser"},
        },
        "network": {"interface": [{
            "ipv4": {
                "ipAddress": [{"privateIpAddress": ip, "publicIpAddress": ""}],
                "subnet": [{"address": "10.224.0.0", "prefix": "16"}],
            },
            "ipv6": {"ipAddress": []},
            "macAddress": "000D3A000000",
        }]},
    }))
}

pub async fn instance(State(state): State<NodeState>, headers: HeaderMap, uri: Uri) -> Response {
    serve(&state, &headers, &uri, None)
}

pub async fn section(
    State(state): State<NodeState>,
    Path(section): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    serve(&state, &headers, &uri, Some(&section))
}

fn serve(state: &NodeState, headers: &HeaderMap, uri: &Uri, section: Option<&str>) -> Response {
    if !has_metadata_header(headers) {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "Bad request. Required metadata header not specified"}),
        );
    }
    if let Some(err) = api_version_error(uri) {
        return err;
    }
    let Some(mut doc) = document(state) else {
        return json_response(StatusCode::NOT_FOUND, &json!({"error": "Not found"}));
    };
    for part in section.unwrap_or_default().split('/').filter(|p| !p.is_empty()) {
        let next = match &doc {
            Value::Object(m) => m
                .get(part)
                .or_else(|| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(part)).map(|(_, v)| v))
                .cloned(),
            Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i).cloned()),
            _ => None,
        };
        match next {
            Some(v) => doc = v,
            None => return json_response(StatusCode::NOT_FOUND, &json!({"error": "Not found"})),
        }
    }
    json_response(StatusCode::OK, &doc)
}
