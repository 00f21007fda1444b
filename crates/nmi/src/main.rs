//! `podid-nmi`: the node agent. See `podid_nmi::args::Args` for flags.
use clap::Parser;
use podid_nmi::args::{Args, go_style};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse_from(go_style(std::env::args()));
    podid_nmi::runtime::init_logging(args.log_format);
    podid_nmi::runtime::run(args).await
}
