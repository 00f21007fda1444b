//! Writes the kustomize tree under `deploy/` from `podid install` (`make deploy`).
//!
//! Usage: `cargo run -p podid-cli --example deploygen -- DEPLOY_DIR`
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "deploy".into()));
    for sub in ["base", "overlays"] {
        let path = dir.join(sub);
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
    }
    for (rel, text) in podid_cli::install::kustomize::tree()? {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)?;
    }
    Ok(())
}
