//! `podid-images`: builds podid's container images without Docker or a registry.
//!
//! ```text
//! podid-images build [--only NAME]... [--skip-cargo] [--refresh-bases]   (make images)
//! podid-images list                                                      the catalog and the index
//! ```
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use podid_images::{Index, build, spec};

#[derive(Parser)]
#[command(about = "Builds podid's container images (tarballs for containerd, docker load and skopeo)")]
struct Cli {
    /// Output folder (default: <cargo target folder>/images).
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Builds the images (release binaries, Debian base layers from the cache or mmdebstrap)
    /// and writes <out>/<image>.tar and <out>/index.json.
    Build {
        /// Only these images (catalog names: nmi, mic, demo, pause, busybox, sdk-python, sdk-rust).
        #[arg(long)]
        only: Vec<String>,
        /// Use the release binaries already built instead of running cargo.
        #[arg(long)]
        skip_cargo: bool,
        /// Rebuild the Debian base layers even if cached (picks up new package versions).
        #[arg(long)]
        refresh_bases: bool,
    },
    /// Lists the catalog and, for images built, their tarballs from the index.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = cli.out.unwrap_or_else(|| podid_images::target_dir().join("images"));
    let result = match cli.command {
        Cmd::Build { only, skip_cargo, refresh_bases } => {
            let repo = podid_images::repo_dir();
            let epoch = epoch(&repo);
            let opts = build::Options {
                target_dir: podid_images::target_dir(),
                repo,
                out: out.clone(),
                cache: podid_images::cache_dir(),
                only,
                cargo: !skip_cargo,
                refresh_bases,
                epoch,
            };
            let started = Instant::now();
            build::build(&opts).map(|built| {
                let written = built.iter().filter(|b| b.written).count();
                eprintln!(
                    "[images] {} images ({written} written) in {:.1} s: {}",
                    built.len(),
                    started.elapsed().as_secs_f64(),
                    out.join(podid_images::index::INDEX_FILE).display()
                );
            })
        }
        Cmd::List => {
            list(&out);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podid-images: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `SOURCE_DATE_EPOCH`, else the last commit's time, else the base layers' epoch.
fn epoch(repo: &std::path::Path) -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .or_else(|| podid_images::tools::commit_time(repo))
        .unwrap_or(spec::BASE_EPOCH)
}

fn list(out: &std::path::Path) {
    let index = Index::read(out);
    for image in spec::catalog() {
        let built = index.as_ref().and_then(|i| i.get(image.name));
        let file = built.map_or_else(
            || "(not built)".to_string(),
            |e| format!("{} {:.1} MB {}", e.file, e.size as f64 / 1e6, e.digest),
        );
        println!("{:<10} {:<34} {file}", image.name, image.reference());
    }
}
