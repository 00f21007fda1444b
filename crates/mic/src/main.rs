//! `podid-mic`: flags → [`podid_mic::runtime::run`].
use clap::Parser;
use podid_mic::Args;
use podid_mic::args::go_style;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse_from(go_style(std::env::args()));
    podid_mic::runtime::init_logging(args.log_format);
    podid_mic::runtime::run(args).await
}
