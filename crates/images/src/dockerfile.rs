//! `docker/Dockerfile` read back as data, and both it and the catalog put in one comparable
//! form ([`Declared`]): base image, packages, setup commands, files, user, entrypoint, env,
//! description. A test fails on any difference, so the Docker build and `make images` ship the
//! same images.
//!
//! The reader knows the instructions the Dockerfile uses (FROM, ARG, RUN, COPY, USER,
//! ENTRYPOINT, ENV, LABEL, WORKDIR) and refuses others, so a new instruction cannot slip past
//! the comparison unread.
use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::spec::{Image, SUITE, Source, Variant};

/// Where the builder stage leaves the binaries (`COPY --from=builder /out/<bin> <dest>`).
pub const BUILDER_OUT: &str = "/out/";

/// One `FROM` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stage {
    /// `AS` name.
    pub name: String,
    /// The base image (`debian:bookworm-slim`).
    pub from: String,
    /// Packages of `apt-get install`.
    pub packages: BTreeSet<String>,
    /// Other `RUN` commands (split at `&&`), in order; `apt-get update` and the removal of apt's
    /// lists are left out.
    pub setup: Vec<String>,
    /// `(--from stage, source, destination)` of each `COPY`.
    pub copies: Vec<(Option<String>, String, String)>,
    pub user: Option<String>,
    pub entrypoint: Vec<String>,
    pub env: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
    /// `--bin` names of `cargo build` commands.
    pub cargo_bins: BTreeSet<String>,
    /// `-p` packages of `cargo build` commands.
    pub cargo_packages: BTreeSet<String>,
}

/// Parses the Dockerfile's stages.
pub fn parse(text: &str) -> Result<Vec<Stage>> {
    let mut stages: Vec<Stage> = Vec::new();
    for (line, instruction) in logical_lines(text) {
        let err = |message: String| Error::Dockerfile { line, message };
        let (word, rest) = instruction.split_once(char::is_whitespace).unwrap_or((&instruction, ""));
        let rest = rest.trim();
        let word = word.to_ascii_uppercase();
        if word == "FROM" {
            let (from, name) = match rest.split_once(" AS ").or_else(|| rest.split_once(" as ")) {
                Some((f, n)) => (f.trim(), n.trim()),
                None => (rest, ""),
            };
            stages.push(Stage { name: name.into(), from: from.into(), ..Stage::default() });
            continue;
        }
        if word == "ARG" && stages.is_empty() {
            continue;
        }
        let Some(stage) = stages.last_mut() else { return Err(err(format!("{word} before FROM"))) };
        match word.as_str() {
            "ARG" | "WORKDIR" => {}
            "RUN" => run(stage, rest),
            "COPY" => stage.copies.push(copy(rest).ok_or_else(|| err(format!("COPY {rest}")))?),
            "USER" => stage.user = Some(rest.into()),
            "ENTRYPOINT" => {
                stage.entrypoint = serde_json::from_str(rest)
                    .map_err(|e| err(format!("ENTRYPOINT is not a JSON array: {e}")))?;
            }
            "ENV" => stage.env.extend(pairs(rest).ok_or_else(|| err(format!("ENV {rest}")))?),
            "LABEL" => stage.labels.extend(pairs(rest).ok_or_else(|| err(format!("LABEL {rest}")))?),
            other => return Err(err(format!("instruction {other} is not compared with the image specs"))),
        }
    }
    Ok(stages)
}

/// Instructions with their first line number: continuations joined, comments dropped.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_none()) {
            continue;
        }
        let (body, continued) = match line.strip_suffix('\\') {
            Some(b) => (b.trim_end(), true),
            None => (line, false),
        };
        let (_, text) = current.get_or_insert_with(|| (n + 1, String::new()));
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(body);
        if !continued && let Some(done) = current.take() {
            out.push(done);
        }
    }
    out.extend(current);
    out
}

/// `a   b` → `a b`.
pub fn normalize(cmd: &str) -> String {
    cmd.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A shell command list split at `&&`, each part normalised.
pub fn split_commands(cmds: &str) -> Vec<String> {
    cmds.split("&&").map(normalize).filter(|c| !c.is_empty()).collect()
}

fn run(stage: &mut Stage, rest: &str) {
    // `RUN --mount=... cmd`: the flags are build plumbing, not image contents.
    let words: Vec<&str> = rest.split_whitespace().skip_while(|w| w.starts_with("--")).collect();
    for cmd in split_commands(&words.join(" ")) {
        let w: Vec<&str> = cmd.split(' ').collect();
        if w.first() == Some(&"cargo") {
            stage.cargo_bins.extend(w.windows(2).filter(|p| p[0] == "--bin").map(|p| p[1].to_string()));
            stage.cargo_packages.extend(w.windows(2).filter(|p| p[0] == "-p").map(|p| p[1].to_string()));
        } else if w.starts_with(&["apt-get", "install"]) {
            stage.packages.extend(w[2..].iter().filter(|p| !p.starts_with('-')).map(|p| p.to_string()));
        } else if cmd == "apt-get update" || cmd == "rm -rf /var/lib/apt/lists/*" {
        } else {
            stage.setup.push(cmd);
        }
    }
}

fn copy(rest: &str) -> Option<(Option<String>, String, String)> {
    let mut from = None;
    let mut paths = Vec::new();
    for w in rest.split_whitespace() {
        match w.strip_prefix("--from=") {
            Some(f) => from = Some(f.to_string()),
            None if w.starts_with("--") => {}
            None => paths.push(w.to_string()),
        }
    }
    let [src, dest] = <[String; 2]>::try_from(paths).ok()?;
    Some((from, src, dest))
}

/// `K=V K2="v 2"` pairs (quotes removed).
fn pairs(rest: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let (value, tail) = match after.strip_prefix('"') {
            Some(q) => {
                let end = q.find('"')?;
                (&q[..end], &q[end + 1..])
            }
            None => after.split_once(char::is_whitespace).unwrap_or((after, "")),
        };
        out.push((key.trim().to_string(), value.to_string()));
        s = tail.trim_start();
    }
    Some(out)
}

/// What an image declares, as both sides can state it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// Base image (`debian:bookworm-slim`).
    pub from: String,
    pub packages: BTreeSet<String>,
    /// Setup commands, split at `&&` and normalised.
    pub setup: Vec<String>,
    /// `(binary, destination)` of each file.
    pub files: BTreeSet<(String, String)>,
    pub user: String,
    pub entrypoint: Vec<String>,
    /// Environment beyond the base image's `PATH`.
    pub env: Vec<(String, String)>,
    /// `org.opencontainers.image.description`.
    pub description: String,
}

/// Label with the image's description.
pub const DESCRIPTION_LABEL: &str = "org.opencontainers.image.description";

/// What the catalog declares for a shipped image (`None`: not in the Dockerfile, or a file
/// the Dockerfile cannot state).
pub fn from_spec(image: &Image) -> Option<Declared> {
    let base = image.base.as_ref().filter(|b| image.shipped && b.variant == Variant::Slim)?;
    let mut files = BTreeSet::new();
    for f in &image.files {
        let Source::Bin { name, .. } = f.source else { return None };
        files.insert((name.to_string(), f.dest.to_string()));
    }
    Some(Declared {
        from: format!("debian:{SUITE}-slim"),
        packages: base.packages.iter().map(|p| p.to_string()).collect(),
        setup: base.setup.iter().flat_map(|c| split_commands(c)).collect(),
        files,
        user: image.user.into(),
        entrypoint: image.entrypoint.iter().map(|s| s.to_string()).collect(),
        env: image.env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        description: image.description.into(),
    })
}

/// What a final stage declares; files must come from the builder's [`BUILDER_OUT`].
pub fn from_stage(stage: &Stage, builder: &str) -> Result<Declared, String> {
    let mut files = BTreeSet::new();
    for (from, src, dest) in &stage.copies {
        let bin = src.strip_prefix(BUILDER_OUT).filter(|_| from.as_deref() == Some(builder));
        let bin =
            bin.ok_or_else(|| format!("stage {}: COPY {src} is not a binary of {builder}", stage.name))?;
        files.insert((bin.to_string(), dest.clone()));
    }
    Ok(Declared {
        from: stage.from.clone(),
        packages: stage.packages.clone(),
        setup: stage.setup.clone(),
        files,
        user: stage.user.clone().unwrap_or_else(|| "0:0".into()),
        entrypoint: stage.entrypoint.clone(),
        env: stage.env.clone(),
        description: stage.labels.get(DESCRIPTION_LABEL).cloned().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# syntax=docker/dockerfile:1
ARG V=1
FROM rust:${V}-bookworm AS builder
RUN --mount=type=cache,target=/x \
    cargo build --release --locked -p pa -p pb \
      --bin a --bin b \
 && cp target/release/a /out/
FROM debian:bookworm-slim AS one
# a comment inside
RUN apt-get update \
 && apt-get install -y --no-install-recommends zz aa \
 && rm -rf /var/lib/apt/lists/* \
 && update-alternatives   --set x /y
COPY --from=builder /out/a /usr/local/bin/a
LABEL org.opencontainers.image.description="the one image"
ENV A=1 B="two words"
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/a", "--flag"]
"#;

    #[test]
    fn stages_hold_packages_setup_files_user_entrypoint_env_and_labels() {
        let stages = parse(TEXT).unwrap();
        assert_eq!(stages.len(), 2);
        assert_eq!(stages[0].cargo_bins, ["a", "b"].map(String::from).into());
        assert_eq!(stages[0].cargo_packages, ["pa", "pb"].map(String::from).into());
        let one = &stages[1];
        assert_eq!((one.name.as_str(), one.from.as_str()), ("one", "debian:bookworm-slim"));
        assert_eq!(one.packages, ["aa", "zz"].map(String::from).into());
        assert_eq!(one.setup, ["update-alternatives --set x /y"]);
        let d = from_stage(one, "builder").unwrap();
        assert_eq!(d.files, [("a".to_string(), "/usr/local/bin/a".to_string())].into());
        assert_eq!(d.user, "65532:65532");
        assert_eq!(d.entrypoint, ["/usr/local/bin/a", "--flag"]);
        assert_eq!(d.env, [("A".into(), "1".into()), ("B".into(), "two words".into())]);
        assert_eq!(d.description, "the one image");
    }

    #[test]
    fn an_instruction_the_comparison_does_not_know_is_refused() {
        let e = parse("FROM x AS y\nVOLUME /data\n").unwrap_err();
        assert!(e.to_string().contains("line 2") && e.to_string().contains("VOLUME"), "{e}");
    }

    #[test]
    fn a_copy_from_elsewhere_than_the_builder_is_not_a_binary() {
        let stages = parse("FROM x AS y\nCOPY ./local /usr/local/bin/z\n").unwrap();
        assert!(from_stage(&stages[0], "builder").is_err());
    }
}
