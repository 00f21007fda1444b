//! Polling until something holds, with a deadline that names what was awaited.
use std::future::Future;
use std::time::Duration;

use crate::{Error, Result};

/// Calls `probe` every `every` until it returns `Ok(Some(value))`, fails, or `timeout` passes.
pub(crate) async fn eventually<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout { what: what.to_owned(), seconds: timeout.as_secs() });
        }
        tokio::time::sleep(every).await;
    }
}
