//! podid's benchmark suite and soak runner (`podid-bench`).
//!
//! ```text
//!   make bench                          podid-bench run: every bench, docs/benchmarks.md + docs/img/*.svg
//!   podid-bench run --quick             a smoke run with small sizes (writes under target/bench/)
//!   podid-bench render --log FILE       re-render the document from a saved run log
//!   podid-bench soak --minutes 10       sustained load with churn; figures for docs/soak.md
//! ```
//!
//! Benchmarks print `BENCH-JSON {…}` lines ([`record`]); the runner ([`runner`]) collects them and
//! the report ([`report`], [`svg`]) renders tables of side-by-side ratios and plots.
#![forbid(unsafe_code)]

pub mod machine;
pub mod record;
pub mod report;
pub mod runner;
pub mod soak;
pub mod svg;
