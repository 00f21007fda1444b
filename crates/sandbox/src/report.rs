//! Step-by-step progress, the summary table, and the timings (JSON file and `BENCH-JSON` lines).
//!
//! ```text
//! [ 3/12] podid install --apply (standard mode)
//!         $ podid install --mode standard --apply ...
//!         ok in 0.41 s
//! ```
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use anyhow::{Context as _, Result};

/// One finished step.
#[derive(Debug, Clone)]
pub struct StepTime {
    pub name: String,
    pub elapsed: Duration,
    pub ok: bool,
}

/// Prints steps as they go and remembers their durations.
#[derive(Debug)]
pub struct Report {
    total: usize,
    began: Instant,
    current: Option<(String, Instant)>,
    pub steps: Vec<StepTime>,
}

impl Report {
    /// A report of `total` planned steps.
    pub fn new(total: usize) -> Self {
        Self { total, began: Instant::now(), current: None, steps: Vec::new() }
    }

    /// Starts step `name`.
    pub fn begin(&mut self, out: &mut impl Write, name: &str) -> Result<()> {
        let n = self.steps.len() + 1;
        writeln!(out, "[{n:>2}/{}] {name}", self.total).map_err(io)?;
        out.flush().map_err(io)?;
        self.current = Some((name.to_owned(), Instant::now()));
        Ok(())
    }

    /// A detail line of the current step.
    pub fn note(&self, out: &mut impl Write, text: &str) -> Result<()> {
        for line in text.lines() {
            writeln!(out, "        {line}").map_err(io)?;
        }
        out.flush().map_err(io)
    }

    /// Ends the current step as verified.
    pub fn done(&mut self, out: &mut impl Write) -> Result<()> {
        if let Some((name, started)) = self.current.take() {
            let elapsed = started.elapsed();
            writeln!(out, "        ok in {:.2} s", elapsed.as_secs_f64()).map_err(io)?;
            out.flush().map_err(io)?;
            self.steps.push(StepTime { name, elapsed, ok: true });
        }
        Ok(())
    }

    /// Ends the current step as failed (for the summary).
    pub fn failed(&mut self) {
        if let Some((name, started)) = self.current.take() {
            self.steps.push(StepTime { name, elapsed: started.elapsed(), ok: false });
        }
    }

    /// Time since the report began.
    pub fn total(&self) -> Duration {
        self.began.elapsed()
    }

    /// The summary table.
    pub fn summary(&self, out: &mut impl Write, mode: &str) -> Result<()> {
        let width = self.steps.iter().map(|s| s.name.chars().count()).max().unwrap_or(4).max(4);
        writeln!(out, "\nsummary ({mode} mode)").map_err(io)?;
        writeln!(out, "  {:<width$}  {:>8}  result", "step", "seconds").map_err(io)?;
        for s in &self.steps {
            let result = if s.ok { "ok" } else { "FAILED" };
            writeln!(out, "  {:<width$}  {:>8.2}  {result}", s.name, s.elapsed.as_secs_f64()).map_err(io)?;
        }
        writeln!(out, "  {:<width$}  {:>8.2}", "total", self.total().as_secs_f64()).map_err(io)?;
        out.flush().map_err(io)
    }

    /// The timings as JSON: `{"suite":"sandbox","mode":…,"total_seconds":…,"steps":[{name,seconds,ok}]}`.
    pub fn json(&self, mode: &str) -> serde_json::Value {
        json!({
            "suite": "sandbox",
            "mode": mode,
            "total_seconds": secs(self.total()),
            "ok": self.steps.iter().all(|s| s.ok),
            "steps": self.steps.iter().map(|s| json!({"name": s.name, "seconds": secs(s.elapsed), "ok": s.ok})).collect::<Vec<_>>(),
        })
    }

    /// One `BENCH-JSON {…}` line per step and one for the total.
    pub fn bench_lines(&self, mode: &str) -> Vec<String> {
        let line = |name: &str, d: Duration, ok: bool| {
            let v = json!({"suite": "sandbox", "name": name, "mode": mode, "seconds": secs(d), "ok": ok});
            format!("BENCH-JSON {v}")
        };
        let mut lines: Vec<String> = self.steps.iter().map(|s| line(&s.name, s.elapsed, s.ok)).collect();
        lines.push(line("total", self.total(), self.steps.iter().all(|s| s.ok)));
        lines
    }

    /// Writes [`json`](Self::json) to `path`.
    pub fn write_json(&self, path: &Path, mode: &str) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.json(mode))?;
        std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
    }
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn io(e: std::io::Error) -> anyhow::Error {
    anyhow::Error::new(e).context("writing output")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report_with(steps: &[(&str, u64, bool)]) -> Report {
        let mut r = Report::new(steps.len());
        for (name, ms, ok) in steps {
            r.steps.push(StepTime { name: (*name).into(), elapsed: Duration::from_millis(*ms), ok: *ok });
        }
        r
    }

    #[test]
    fn steps_print_numbered_and_end_with_their_time() {
        let mut r = Report::new(2);
        let mut out = Vec::new();
        r.begin(&mut out, "start things").unwrap();
        r.note(&mut out, "a\nb").unwrap();
        r.done(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("[ 1/2] start things\n        a\n        b\n        ok in "), "{text}");
        assert_eq!(r.steps.len(), 1);
    }

    #[test]
    fn json_and_bench_lines_carry_every_step_and_the_total() {
        let r = report_with(&[("cluster", 1500, true), ("demo", 250, false)]);
        let v = r.json("standard");
        assert_eq!(v["steps"][0]["seconds"], 1.5);
        assert_eq!(v["ok"], false);
        let lines = r.bench_lines("managed");
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("BENCH-JSON {") && lines[1].contains("\"name\":\"demo\""), "{lines:?}");
        assert!(lines[2].contains("\"name\":\"total\"") && lines[2].contains("\"mode\":\"managed\""));
    }

    #[test]
    fn summary_marks_failed_steps() {
        let r = report_with(&[("cluster", 1000, true), ("demo", 10, false)]);
        let mut out = Vec::new();
        r.summary(&mut out, "standard").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("demo") && text.contains("FAILED") && text.contains("total"), "{text}");
    }
}
