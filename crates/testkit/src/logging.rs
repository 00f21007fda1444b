//! Log output for tests.

/// Sends `tracing` output to the test harness's captured output, once per process.
///
/// The filter comes from `RUST_LOG`, else `podid=debug,podid_testkit=info,warn`. Safe to call from
/// every test.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("podid=debug,podid_testkit=info,warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}
