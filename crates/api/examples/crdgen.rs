//! Prints the CRD manifests generated from the Rust types: `cargo run -p podid-api --example crdgen`.
fn main() -> Result<(), podid_api::crd::RenderError> {
    print!("{}", podid_api::crd::render_yaml()?);
    Ok(())
}
