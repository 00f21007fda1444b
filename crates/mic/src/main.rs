//! `podid-mic`: flags → runtime (`--worker-threads`) → [`podid_mic::runtime::run`].
use clap::Parser;
use podid_mic::Args;
use podid_mic::args::go_style;

fn main() -> anyhow::Result<()> {
    let args = Args::parse_from(go_style(std::env::args()));
    // One thread by default: with glibc, every thread that allocates gets an arena that keeps the
    // memory it freed (see --worker-threads and docs/benchmarks.md, "Controller memory").
    let mut runtime = match args.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(usize::from(n));
            b
        }
    };
    let runtime = runtime.enable_all().build()?;
    runtime.block_on(async {
        podid_mic::runtime::init_logging(args.log_format);
        podid_mic::runtime::run(args).await
    })
}
