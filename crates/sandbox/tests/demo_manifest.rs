//! The sandbox's demo.yaml is the seed's (`../shared/seed`): the same pod once the variables are
//! filled in, except for the image (built here) and the two arguments that point the demo at the
//! sandbox's Azure.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use podid_sandbox::demo::{self, Vars};
use serde_json::Value;

/// The seed's first demo.yaml (the walkthrough's `demo` pod), with its variables filled in.
fn seed_demo(vars: &Vars) -> Value {
    let seed_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/seed");
    let page = std::fs::read_dir(&seed_dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "txt"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .expect("the seed page");
    let start = page.find("apiVersion: v1\nkind: Pod").expect("the seed's demo.yaml");
    let end =
        start + page[start..].find("kubernetes.io/os: linux").unwrap() + "kubernetes.io/os: linux".len();
    let text = page[start..end]
        .replace("$POD_IDENTITY_NAME", &vars.selector)
        .replace("$SUBSCRIPTION_ID", &vars.subscription)
        .replace("$IDENTITY_CLIENT_ID", &vars.client_id)
        .replace("$IDENTITY_RESOURCE_GROUP", &vars.resource_group);
    serde_saphyr::from_str(&text).unwrap()
}

fn vars() -> Vars {
    Vars {
        selector: "my-pod-identity".into(),
        image: "ghcr.io/podid/podid-demo:v0.1.0".into(),
        subscription: "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f".into(),
        client_id: "a99c11e0-0000-4000-8000-000000a99001".into(),
        resource_group: "MC_podid_podid_eastus".into(),
        arm_endpoint: "https://10.250.250.1:40000".into(),
    }
}

#[test]
fn the_sandbox_applies_the_seeds_demo_pod_with_only_the_image_and_two_endpoint_arguments_changed() {
    let vars = vars();
    let mut ours: Value = serde_saphyr::from_str(&demo::render(&vars)).unwrap();
    let seed = seed_demo(&vars);
    let container = &mut ours["spec"]["containers"][0];
    assert_eq!(container["image"], vars.image.as_str());
    let args = container["args"].as_array_mut().unwrap();
    let extra: Vec<Value> = args.drain(3..).collect();
    assert_eq!(
        extra,
        [
            Value::from(format!("--arm-endpoint={}", vars.arm_endpoint)),
            Value::from(format!("--ca-file={}", podid_sandbox::world::POD_CA_FILE))
        ]
    );
    container["image"] = seed["spec"]["containers"][0]["image"].clone();
    assert_eq!(ours, seed);
}
