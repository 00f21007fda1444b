//! A soak's counts and samples, its verdict and its Markdown summary.
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Unexpected outcomes kept verbatim (the count is always exact).
const KEEP: usize = 20;
/// Memory counts as flat if the last sample exceeds the first after warm-up by less than this
/// fraction or [`FLAT_SLACK_KIB`], whichever is larger.
const FLAT_FRACTION: f64 = 0.15;
const FLAT_SLACK_KIB: u64 = 4 * 1024;
/// Samples before this many seconds are warm-up (caches filling, allocator arenas growing).
const WARM_UP_SECS: u64 = 60;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub minutes: f64,
    pub requests: u64,
    pub ok: u64,
    /// Expected errors by status (4xx while a pod is absent or unbound).
    pub expected: BTreeMap<u16, u64>,
    pub unexpected_count: u64,
    pub unexpected: Vec<String>,
    pub churn_cycles: u64,
    pub toggles: u64,
    /// (seconds since start, agent RSS KiB).
    pub rss_kib: Vec<(u64, u64)>,
    pub agent_alive: bool,
}

impl Outcome {
    pub fn new(minutes: f64) -> Self {
        Self { minutes, agent_alive: true, ..Self::default() }
    }

    pub fn unexpected(&mut self, what: String) {
        self.unexpected_count += 1;
        if self.unexpected.len() < KEEP {
            tracing::warn!(%what, "Unexpected");
            self.unexpected.push(what);
        }
    }

    /// Adds a worker's counts.
    pub fn merge(&mut self, other: Self) {
        self.requests += other.requests;
        self.ok += other.ok;
        for (k, v) in other.expected {
            *self.expected.entry(k).or_default() += v;
        }
        self.unexpected_count += other.unexpected_count;
        let room = KEEP.saturating_sub(self.unexpected.len());
        self.unexpected.extend(other.unexpected.into_iter().take(room));
    }

    /// (first after warm-up, last, max) RSS in KiB.
    pub fn rss_summary(&self) -> (u64, u64, u64) {
        let warm = self.rss_kib.iter().find(|(t, _)| *t >= WARM_UP_SECS).or(self.rss_kib.first());
        let first = warm.map_or(0, |s| s.1);
        let last = self.rss_kib.last().map_or(0, |s| s.1);
        let max = self.rss_kib.iter().map(|s| s.1).max().unwrap_or(0);
        (first, last, max)
    }

    pub fn memory_flat(&self) -> bool {
        let (first, last, _) = self.rss_summary();
        let allowed = ((first as f64 * FLAT_FRACTION) as u64).max(FLAT_SLACK_KIB);
        first > 0 && last <= first + allowed
    }

    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        if self.unexpected_count > 0 {
            f.push(format!(
                "{} unexpected answers (first: {:?})",
                self.unexpected_count,
                self.unexpected.first()
            ));
        }
        if !self.memory_flat() {
            let (first, last, _) = self.rss_summary();
            f.push(format!("agent RSS grew from {first} KiB to {last} KiB"));
        }
        if !self.agent_alive {
            f.push("the agent exited".into());
        }
        if self.ok == 0 {
            f.push("no successful request".into());
        }
        f
    }

    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    pub fn markdown(&self) -> String {
        let (first, last, max) = self.rss_summary();
        let mib = |k: u64| k as f64 / 1024.0;
        let expected: Vec<String> = self.expected.iter().map(|(s, n)| format!("{n} × {s}")).collect();
        let mut md = String::new();
        let _ = writeln!(md, "| measure | figure |\n|---|---|");
        let _ = writeln!(md, "| duration | {:.1} min |", self.minutes);
        let _ = writeln!(
            md,
            "| token requests | {} ({:.0}/s) |",
            self.requests,
            self.requests as f64 / (self.minutes * 60.0).max(1.0)
        );
        let _ = writeln!(md, "| 200 with the right identity | {} |", self.ok);
        let _ = writeln!(
            md,
            "| expected errors (pod absent / identity unbound) | {} |",
            if expected.is_empty() { "none".into() } else { expected.join(", ") }
        );
        let _ = writeln!(
            md,
            "| **unexpected answers** (wrong identity, stale grant, other errors) | **{}** |",
            self.unexpected_count
        );
        let _ =
            writeln!(md, "| pod churn cycles (4 pods deleted + recreated each) | {} |", self.churn_cycles);
        let _ = writeln!(md, "| binding toggles | {} |", self.toggles);
        let _ = writeln!(
            md,
            "| agent RSS first (after {WARM_UP_SECS} s) / last / max | {:.1} / {:.1} / {:.1} MiB |",
            mib(first),
            mib(last),
            mib(max)
        );
        let _ = writeln!(
            md,
            "| memory flat (last ≤ first + max(15 %, 4 MiB)) | {} |",
            if self.memory_flat() { "yes" } else { "**no**" }
        );
        let _ = writeln!(md, "| verdict | {} |", if self.passed() { "**pass**" } else { "**FAIL**" });
        for u in &self.unexpected {
            let _ = writeln!(md, "\n- unexpected: {u}");
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_rss(samples: &[(u64, u64)]) -> Outcome {
        Outcome { ok: 1, rss_kib: samples.to_vec(), ..Outcome::new(1.0) }
    }

    #[test]
    fn memory_is_flat_within_the_allowance_after_warm_up() {
        assert!(with_rss(&[(0, 5_000), (60, 20_000), (600, 22_000)]).memory_flat());
        assert!(!with_rss(&[(0, 5_000), (60, 20_000), (600, 40_000)]).memory_flat());
        assert_eq!(
            with_rss(&[(0, 5_000), (60, 20_000), (600, 22_000)]).rss_summary(),
            (20_000, 22_000, 22_000)
        );
    }

    #[test]
    fn any_unexpected_answer_fails_the_soak_and_is_counted_beyond_those_kept() {
        let mut o = with_rss(&[(60, 10_000), (120, 10_000)]);
        assert!(o.passed());
        for i in 0..30 {
            o.unexpected(format!("x{i}"));
        }
        assert_eq!((o.unexpected_count, o.unexpected.len()), (30, KEEP));
        assert!(!o.passed());
        assert!(o.markdown().contains("**30**"));
    }
}
