//! IMDS token requests per second over loopback, at a few concurrencies: the baseline the node agent
//! is compared with. Each worker holds one keep-alive HTTP/1.1 connection and sends the request
//! azure-identity sends. Bounded: a fixed time per concurrency level.
//!
//!     cargo bench -p podid-emulator --bench imds [-- SECONDS_PER_LEVEL]
//!
//! Each level is also printed as a `BENCH-JSON {…}` line (suite `imds`) for `podid-bench`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use podid_emulator::{Emulator, EmulatorConfig, SettingsUpdate};

const LEVELS: &[usize] = &[1, 4, 16, 64];

async fn worker(
    addr: String,
    until: Instant,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    latency_us: Arc<AtomicU64>,
) {
    let Ok(stream) = tokio::net::TcpStream::connect(&addr).await else {
        failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let _ = stream.set_nodelay(true);
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
        failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    tokio::spawn(conn);
    while Instant::now() < until {
        let req = http::Request::get(
            "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com",
        )
        .header("host", &addr)
        .header("metadata", "true")
        .body(Empty::<bytes::Bytes>::new());
        let Ok(req) = req else { return };
        let start = Instant::now();
        match sender.send_request(req).await {
            Ok(resp) if resp.status() == 200 => {
                let _ = resp.into_body().collect().await;
                ok.fetch_add(1, Ordering::Relaxed);
                latency_us.fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
            _ => {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// Runs `level` workers for `secs` seconds; returns (requests/s, mean latency ms, errors).
async fn run_level(addr: &str, level: usize, secs: u64) -> (f64, f64, u64) {
    let (ok, failed, lat) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..level)
        .map(|_| tokio::spawn(worker(addr.to_string(), until, ok.clone(), failed.clone(), lat.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = ok.load(Ordering::Relaxed);
    let mean = if n > 0 { lat.load(Ordering::Relaxed) as f64 / n as f64 / 1000.0 } else { 0.0 };
    (n as f64 / elapsed, mean, failed.load(Ordering::Relaxed))
}

fn main() {
    let secs: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return eprintln!("runtime: {e}"),
    };
    rt.block_on(async move {
        let emu = match Emulator::start(EmulatorConfig::default()).await {
            Ok(e) => e,
            Err(e) => return eprintln!("emulator: {e}"),
        };
        let Some(url) = emu.imds_url("aks-nodepool1-12345678-vmss000000") else { return };
        let addr = url.trim_start_matches("http://").to_string();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!("IMDS token requests/s on {addr} ({cores} cores, {secs} s per level)");
        for cache in [true, false] {
            emu.update_settings(&SettingsUpdate { imds_token_cache: Some(cache), ..Default::default() });
            let what = if cache {
                "on (tokens reused, as real IMDS)"
            } else {
                "off (one RS256 signature per request)"
            };
            println!("token cache {what}");
            println!("{:>11} {:>10} {:>12} {:>8}", "concurrency", "req/s", "mean ms", "errors");
            for &level in LEVELS {
                let (rate, mean, errors) = run_level(&addr, level, secs).await;
                println!("{level:>11} {rate:>10.0} {mean:>12.2} {errors:>8}");
                let name = if cache { "token cache on" } else { "token cache off" };
                let line = serde_json::json!({"suite": "imds", "name": name, "concurrency": level, "rps": rate, "mean_ms": mean, "errors": errors});
                println!("BENCH-JSON {line}");
            }
        }
        emu.shutdown().await;
    });
}
