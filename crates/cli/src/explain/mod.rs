//! `podid explain`: the decision chain for a pod (or the users of an identity). `explain pod`
//! calls the agent's own decision ([`podid_core::decision::decide`]) and prints its trace as
//! numbered steps ending in one verdict line; it never decides anything itself.
//!
//! ```text
//!  pod ─▶ request ─▶ exceptions ─▶ label ─▶ bindings (oldest first) ─▶ assignments ─▶ choice ─▶ node
//!                      └─ federated identity: service account ─▶ subject ─▶ issuer
//!                         ─▶ federated credential on the identity                      ─▶ verdict
//! ```
mod federation;
mod identity;
mod pod;
#[cfg(test)]
mod tests;

use std::io::Write;

use serde::Serialize;

use crate::args::TextFormat;
use crate::error::{Error, Result};

pub(crate) use identity::identity;
pub(crate) use pod::pod;

/// What `explain` found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// `pod NS/NAME` or `identity NS/NAME`.
    pub subject: String,
    /// The steps, in decision order.
    pub steps: Vec<Step>,
    /// The identity the pod gets (`NS/NAME`), if any.
    pub identity: Option<String>,
    /// One line: the answer.
    pub verdict: String,
}

/// One step of the chain.
#[derive(Debug, Serialize)]
pub struct Step {
    pub title: String,
    pub lines: Vec<String>,
}

impl Report {
    fn new(subject: String) -> Self {
        Self { subject, ..Default::default() }
    }

    fn step(&mut self, title: &str, lines: Vec<String>) {
        self.steps.push(Step { title: title.to_string(), lines });
    }

    fn write(&self, format: TextFormat, out: &mut impl Write) -> Result<()> {
        match format {
            TextFormat::Json => {
                let text = serde_json::to_string_pretty(self).map_err(|e| Error::Serialize(e.to_string()))?;
                writeln!(out, "{text}")?;
            }
            TextFormat::Text => {
                writeln!(out, "{}", self.subject)?;
                for (n, step) in self.steps.iter().enumerate() {
                    writeln!(out, "{}. {}", n + 1, step.title)?;
                    for line in &step.lines {
                        writeln!(out, "   {line}")?;
                    }
                }
                writeln!(out, "VERDICT: {}", self.verdict)?;
            }
        }
        Ok(())
    }
}

/// `namespace/name` of any object.
fn key<K: kube::Resource>(o: &K) -> String {
    format!(
        "{}/{}",
        o.meta().namespace.as_deref().unwrap_or_default(),
        o.meta().name.as_deref().unwrap_or_default()
    )
}
