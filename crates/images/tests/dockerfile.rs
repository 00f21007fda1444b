//! `docker/Dockerfile` and the catalog declare the same shipped images, under the references
//! `podid install` renders by default.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use podid_cli::install::{DEFAULT_REGISTRY, DEFAULT_TAG, InstallOptions, Mode, render};
use podid_images::dockerfile::{self, Declared};
use podid_images::{build, spec};

fn stages() -> Vec<dockerfile::Stage> {
    let text = std::fs::read_to_string(podid_images::repo_dir().join("docker/Dockerfile")).unwrap();
    dockerfile::parse(&text).unwrap()
}

fn shipped() -> Vec<spec::Image> {
    spec::catalog().into_iter().filter(|i| i.shipped).collect()
}

#[test]
fn every_shipped_image_is_a_dockerfile_stage_declaring_the_same_contents() {
    let stages = stages();
    for image in shipped() {
        let want: Declared = dockerfile::from_spec(&image).expect("a shipped image the Dockerfile can state");
        let stage = stages.iter().find(|s| s.name == image.name).unwrap_or_else(|| {
            panic!("docker/Dockerfile has no stage {} (stages: {:?})", image.name, names(&stages))
        });
        let have = dockerfile::from_stage(stage, "builder").unwrap();
        assert_eq!(have, want, "stage {} differs from the catalog (crates/images/src/spec.rs)", image.name);
    }
}

#[test]
fn the_dockerfile_has_no_final_stage_the_catalog_does_not_build() {
    let want: BTreeSet<&str> = shipped().iter().map(|i| i.name).chain(["builder"]).collect();
    let stages = stages();
    assert_eq!(names(&stages).into_iter().collect::<BTreeSet<_>>(), want);
}

#[test]
fn the_builder_compiles_exactly_the_binaries_of_the_shipped_images() {
    let stages = stages();
    let builder = stages.iter().find(|s| s.name == "builder").unwrap();
    let invocations = build::cargo_invocations(&shipped());
    assert_eq!(invocations.len(), 1, "shipped images need no feature-gated binary: {invocations:?}");
    let flag = |f: &str| -> BTreeSet<String> {
        invocations[0].windows(2).filter(|w| w[0] == f).map(|w| w[1].clone()).collect()
    };
    assert_eq!(builder.cargo_bins, flag("--bin"));
    assert_eq!(builder.cargo_packages, flag("-p"), "the same -p selection (the same features)");
}

#[test]
fn the_shipped_references_are_what_install_renders_by_default() {
    assert_eq!(spec::REGISTRY, DEFAULT_REGISTRY);
    assert_eq!(spec::TAG, DEFAULT_TAG);
    for mode in [Mode::Standard, Mode::Managed, Mode::Federated] {
        let objs = render(&InstallOptions { mode, ..InstallOptions::default() }).unwrap();
        let rendered = images_in(&serde_json::Value::Array(objs));
        let ours: BTreeSet<String> = shipped().iter().map(spec::Image::reference).collect();
        assert!(!rendered.is_empty());
        for r in &rendered {
            assert!(ours.contains(r), "{mode:?}: install renders {r}, which make images does not build");
        }
    }
    let standard = images_in(&serde_json::Value::Array(render(&InstallOptions::default()).unwrap()));
    assert_eq!(
        standard,
        ["ghcr.io/podid/podid-mic:v0.1.0", "ghcr.io/podid/podid-nmi:v0.1.0"].map(String::from).into()
    );
}

fn images_in(v: &serde_json::Value) -> BTreeSet<String> {
    match v {
        serde_json::Value::Object(m) => m
            .iter()
            .flat_map(|(k, v)| match (k.as_str(), v) {
                ("image", serde_json::Value::String(s)) => [s.clone()].into(),
                _ => images_in(v),
            })
            .collect(),
        serde_json::Value::Array(a) => a.iter().flat_map(images_in).collect(),
        _ => BTreeSet::new(),
    }
}

fn names(stages: &[dockerfile::Stage]) -> Vec<&str> {
    stages.iter().map(|s| s.name.as_str()).collect()
}
