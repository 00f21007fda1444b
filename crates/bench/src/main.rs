//! `podid-bench`: runs podid's benchmark suite and writes `docs/benchmarks.md`, or runs the soak.
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use podid_bench::machine::{Machine, now_utc};
use podid_bench::record::parse_output;
use podid_bench::report::{Run, Step, render, splice};
use podid_bench::runner::{Sizes, execute, plan};
use podid_bench::soak;

#[derive(Parser)]
#[command(name = "podid-bench", about = "podid's benchmark suite and soak runner")]
struct Cli {
    /// The workspace root (default: found from this crate's location).
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every benchmark side by side and write the report.
    Run {
        /// Small sizes and short rows: a smoke run (report under target/bench/ unless --doc).
        #[arg(long)]
        quick: bool,
        /// The Markdown file whose generated section is replaced.
        #[arg(long)]
        doc: Option<PathBuf>,
        /// Where the SVG plots go (default: `img/` next to the document).
        #[arg(long)]
        img: Option<PathBuf>,
        /// Only commands containing this text (e.g. `token_path`).
        #[arg(long)]
        only: Option<String>,
    },
    /// Re-render a report from a saved run log (`target/bench/run.log`).
    Render {
        #[arg(long)]
        log: PathBuf,
        #[arg(long)]
        doc: PathBuf,
        #[arg(long)]
        img: Option<PathBuf>,
    },
    /// Sustained token load against the agent with pods churning and identities bound and unbound.
    Soak(soak::SoakOptions),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let root = match cli.root {
        Some(r) => r,
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize()?,
    };
    match cli.command {
        Cmd::Run { quick, doc, img, only } => run(&root, quick, doc, img, only.as_deref()),
        Cmd::Render { log, doc, img } => {
            let text = std::fs::read_to_string(&log).with_context(|| format!("read {}", log.display()))?;
            let run = Run {
                date: now_utc(),
                machine: Machine::detect(),
                steps: steps_from_log(&text),
                records: parse_output(&text),
                ..Run::default()
            };
            write_report(&run, &doc, img)
        }
        Cmd::Soak(options) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let outcome = rt.block_on(soak::run(&root, &options))?;
            println!("{}", outcome.markdown());
            anyhow::ensure!(outcome.passed(), "soak failed: {}", outcome.failures().join("; "));
            Ok(())
        }
    }
}

fn run(
    root: &Path,
    quick: bool,
    doc: Option<PathBuf>,
    img: Option<PathBuf>,
    only: Option<&str>,
) -> anyhow::Result<()> {
    let sizes = if quick { Sizes::quick() } else { Sizes::full() };
    let bench_dir = root.join("target/bench");
    std::fs::create_dir_all(&bench_dir)?;
    let log_path = bench_dir.join(if quick { "run-quick.log" } else { "run.log" });
    let mut log = std::fs::File::create(&log_path)?;
    let mut run = Run { date: now_utc(), quick, machine: Machine::detect(), ..Run::default() };
    for planned in plan(&sizes, root) {
        if only.is_some_and(|o| !planned.display().contains(o)) {
            continue;
        }
        let (step, records) = execute(&planned, root, &mut log);
        let _ = writeln!(
            log,
            "# step ok={} seconds={:.1} load={:?}->{:?}",
            step.ok, step.seconds, step.load_before, step.load_after
        );
        run.steps.push(step);
        run.records.extend(records);
    }
    let doc = doc.unwrap_or_else(|| {
        if quick { bench_dir.join("benchmarks-quick.md") } else { root.join("docs/benchmarks.md") }
    });
    write_report(&run, &doc, img)?;
    eprintln!("log: {}", log_path.display());
    let failed: Vec<&str> = run.steps.iter().filter(|s| !s.ok).map(|s| s.command.as_str()).collect();
    anyhow::ensure!(failed.is_empty(), "failed: {}", failed.join(", "));
    Ok(())
}

/// Steps recorded in a run log (`$ command` … `# step ok=…`).
fn steps_from_log(text: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut command = None;
    for line in text.lines() {
        if let Some(c) = line.strip_prefix("$ ") {
            command = Some(c.to_string());
        } else if let Some(rest) = line.strip_prefix("# step ")
            && let Some(command) = command.take()
        {
            let field = |k: &str| rest.split_whitespace().find_map(|p| p.strip_prefix(k).map(str::to_string));
            let load = |s: &str| s.trim_start_matches("Some(").trim_end_matches(')').parse().ok();
            let loads = field("load=").unwrap_or_default();
            let (before, after) = loads.split_once("->").unwrap_or(("", ""));
            steps.push(Step {
                command,
                ok: field("ok=").as_deref() == Some("true"),
                seconds: field("seconds=").and_then(|s| s.parse().ok()).unwrap_or(0.0),
                load_before: load(before),
                load_after: load(after),
            });
        }
    }
    steps
}

fn write_report(run: &Run, doc: &Path, img: Option<PathBuf>) -> anyhow::Result<()> {
    let report = render(run);
    let img = img.unwrap_or_else(|| doc.parent().unwrap_or(Path::new(".")).join("img"));
    std::fs::create_dir_all(&img)?;
    for (name, svg) in &report.plots {
        std::fs::write(img.join(name), svg)?;
    }
    let existing = std::fs::read_to_string(doc).unwrap_or_else(|_| "# Benchmarks\n".into());
    std::fs::write(doc, splice(&existing, &report.markdown))?;
    eprintln!("wrote {} and {} plot(s) in {}", doc.display(), report.plots.len(), img.display());
    Ok(())
}
