//! The commands a user types: printed as `$ …` lines they can copy, then run for real.
use std::io::Write;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::report::Report;

/// `command` as a user would type it: its program's file name, then its arguments, quoted where
/// a shell needs quotes.
pub fn shown(command: &Command) -> String {
    let program = std::path::Path::new(command.get_program())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::iter::once(program)
        .chain(command.get_args().map(|a| quote(&a.to_string_lossy())))
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(arg: &str) -> String {
    let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain { arg.to_owned() } else { format!("'{}'", arg.replace('\'', "'\\''")) }
}

/// Prints `$ command` under the current step, runs it, and returns its stdout; a failure is an
/// error carrying what it printed.
pub fn run(r: &Report, out: &mut impl Write, mut command: Command) -> Result<String> {
    let line = shown(&command);
    r.note(out, &format!("$ {line}"))?;
    let output = command.output().with_context(|| format!("cannot run `{line}`"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).trim_end().to_owned();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("`{line}` failed ({}):\n{stdout}\n{}", output.status, stderr.trim_end());
    }
    Ok(stdout)
}

/// [`run`], then prints what the command printed under the step.
pub fn run_noted(r: &Report, out: &mut impl Write, command: Command) -> Result<()> {
    let text = run(r, out, command)?;
    r.note(out, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_shown_as_a_shell_would_read_them() {
        let mut c = Command::new("/some/where/podid");
        c.args(["identity", "add", "--name", "my-pod-identity", "a b", "it's"]);
        assert_eq!(shown(&c), "podid identity add --name my-pod-identity 'a b' 'it'\\''s'");
    }
}
