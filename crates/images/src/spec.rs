//! What each image holds, as data: the one place that says it (`docker/Dockerfile` declares the
//! same for the shipped images, and a test compares the two).
//!
//! ```text
//!  Base (a Debian root file system: suite, variant, packages, setup commands)
//!    │  one mmdebstrap run, cached under $PODID_CACHE/images/rootfs/<key>
//!    ▼
//!  Image = [base layer] + one layer of Files (release binaries, repo files, pip packages, ...)
//!          + config (user, entrypoint, env)  ──▶  target/images/<file>.tar
//! ```
//!
//! Shipped images (`Image::shipped`) are what `podid install` deploys; the others are test images
//! under the test-only registry [`TEST_REGISTRY`].

/// Registry and repository prefix of the shipped images (`podid install`'s `--image-registry`).
pub const REGISTRY: &str = "ghcr.io/podid";
/// Tag of every image: the workspace version with a `v` (`podid install`'s `--tag`).
pub const TAG: &str = concat!("v", env!("CARGO_PKG_VERSION"));
/// Registry of the test-only images; nothing is ever pushed there.
pub const TEST_REGISTRY: &str = "podid.test";
/// Debian release of every root file system (`debian:bookworm-slim` in the Dockerfile).
pub const SUITE: &str = "bookworm";
/// Where apt fetches packages from (release, updates and security, as the official images).
pub const MIRRORS: &[&str] = &[
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
];
/// File times in base layers (2025-01-01T00:00:00Z): newer files are clamped to it, so a base
/// layer depends only on the packages it holds, never on the day it was built.
pub const BASE_EPOCH: u64 = 1_735_689_600;

/// Python of the Python SDK image (Debian bookworm's python3).
pub const PYTHON_VERSION: &str = "3.11";

/// `uid:gid` of the non-root images (`nonroot`, as distroless).
pub const NONROOT: &str = "65532:65532";

/// How a root file system is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// `debian:<suite>-slim`: mmdebstrap `minbase` (Priority: required + apt) with merged /usr and
    /// the slim image's dpkg excludes (no docs but copyrights, no man pages, no locales).
    Slim,
    /// The packages' files only, no maintainer scripts, no dpkg database (mmdebstrap `extract`).
    Extract,
}

/// A Debian root file system: the bottom layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Base {
    /// Short name (cache folders and logs).
    pub name: &'static str,
    /// How it is made.
    pub variant: Variant,
    /// Packages installed on top of the variant, sorted (without recommends, as
    /// `apt-get install --no-install-recommends`).
    pub packages: &'static [&'static str],
    /// Shell commands run in the finished root file system (`<shell> -c` in a chroot; the
    /// Dockerfile's `RUN` after `apt-get install`), in order (for [`Variant::Extract`]: once
    /// the packages are extracted).
    pub setup: &'static [&'static str],
    /// The shell that runs `setup` inside the root file system.
    pub shell: &'static str,
}

/// Where a file of the top layer comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// A release binary of a shipped crate (`cargo build --release -p PACKAGE --bin NAME`, all
    /// shipped binaries in one invocation).
    Bin { package: &'static str, name: &'static str },
    /// A release binary behind a cargo feature, built on its own
    /// (`cargo build --release -p PACKAGE --features FEATURE --bin NAME`).
    FeatureBin { package: &'static str, feature: &'static str, name: &'static str },
    /// A file of the repository, relative to its root.
    Repo(&'static str),
    /// A static C program compiled from this repository file (`gcc -static`).
    StaticC(&'static str),
    /// Python packages from a pinned, hashed requirements file (`pip install --target`); the
    /// destination is the folder they go into.
    Pip { requirements: &'static str },
}

/// One file (or folder of files) of an image's top layer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct File {
    /// What goes there.
    pub source: Source,
    /// Absolute path in the image.
    pub dest: &'static str,
    /// Permission bits of a single file (folders from pip get 0755/0644).
    pub mode: u32,
}

/// One image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Image {
    /// Short name: the key in the index and the Dockerfile stage (`nmi`, `mic`, `demo`, ...).
    pub name: &'static str,
    /// Repository without tag (`ghcr.io/podid/podid-nmi`).
    pub repository: String,
    /// What it is for (image label `org.opencontainers.image.description`).
    pub description: &'static str,
    /// Bottom layer; `None` for an image of the top layer alone (`FROM scratch`).
    pub base: Option<Base>,
    /// The top layer.
    pub files: Vec<File>,
    /// `uid:gid` the container runs as.
    pub user: &'static str,
    /// `ENTRYPOINT`.
    pub entrypoint: Vec<&'static str>,
    /// Environment beyond `PATH` (`ENV` lines).
    pub env: Vec<(&'static str, &'static str)>,
    /// Deployed by `podid install` and declared by `docker/Dockerfile`.
    pub shipped: bool,
}

impl Image {
    /// `repository:tag`, as `ctr images ls` and the pod specs name it.
    pub fn reference(&self) -> String {
        format!("{}:{TAG}", self.repository)
    }

    /// Name of the tarball under the output folder.
    pub fn file_name(&self) -> String {
        let last = self.repository.rsplit('/').next().unwrap_or(self.name);
        format!("{last}.tar")
    }
}

/// `PATH` of every image with a Debian base (as `debian:bookworm-slim` sets it).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const NONROOT_USER: &str = "groupadd --gid 65532 nonroot \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nonroot";

/// Root file system of the agent: iptables (nft backend, as upstream selects), conntrack, CA bundle.
pub const AGENT_BASE: Base = Base {
    name: "agent",
    variant: Variant::Slim,
    packages: &["ca-certificates", "conntrack", "iptables"],
    setup: &["update-alternatives --set iptables /usr/sbin/iptables-nft"],
    shell: "/bin/sh",
};

/// Root file system of the controller, the demo and the Rust SDK probe: CA bundle, `nonroot` user.
pub const CA_BASE: Base = Base {
    name: "ca",
    variant: Variant::Slim,
    packages: &["ca-certificates"],
    setup: &[NONROOT_USER],
    shell: "/bin/sh",
};

/// Root file system of the Python SDK probe: Debian's python3, the CA bundle, `nonroot` user.
pub const PYTHON_BASE: Base = Base {
    name: "python",
    variant: Variant::Slim,
    packages: &["ca-certificates", "python3"],
    setup: &[NONROOT_USER],
    shell: "/bin/sh",
};

/// The busybox-static package's files and a link for every applet (`/bin/sh`, `/bin/nc`, ...).
pub const BUSYBOX_BASE: Base = Base {
    name: "busybox",
    variant: Variant::Extract,
    packages: &["busybox-static"],
    setup: &["mkdir -p /sbin /usr/bin /usr/sbin && /bin/busybox --install -s"],
    shell: "/bin/busybox sh",
};

fn bin(package: &'static str, name: &'static str, dest: &'static str) -> File {
    File { source: Source::Bin { package, name }, dest, mode: 0o755 }
}

/// Every image `make images` builds, shipped ones first.
pub fn catalog() -> Vec<Image> {
    let shipped = |name: &'static str| format!("{REGISTRY}/podid-{name}");
    let test = |name: &'static str| format!("{TEST_REGISTRY}/{name}");
    vec![
        Image {
            name: "nmi",
            repository: shipped("nmi"),
            description: "podid node agent (root: it installs the iptables rule that sends pods' IMDS traffic to it)",
            base: Some(AGENT_BASE),
            files: vec![bin("podid-nmi", "podid-nmi", "/usr/local/bin/podid-nmi")],
            user: "0:0",
            entrypoint: vec!["/usr/local/bin/podid-nmi"],
            env: vec![],
            shipped: true,
        },
        Image {
            name: "mic",
            repository: shipped("mic"),
            description: "podid controller and the podid CLI (non-root)",
            base: Some(CA_BASE),
            files: vec![
                bin("podid-mic", "podid-mic", "/usr/local/bin/podid-mic"),
                bin("podid-cli", "podid", "/usr/local/bin/podid"),
            ],
            user: NONROOT,
            entrypoint: vec!["/usr/local/bin/podid-mic"],
            env: vec![],
            shipped: true,
        },
        Image {
            name: "demo",
            repository: shipped("demo"),
            description: "podid demo application of the walkthrough (non-root)",
            base: Some(CA_BASE),
            files: vec![bin("podid-demo", "podid-demo", "/usr/local/bin/podid-demo")],
            user: NONROOT,
            entrypoint: vec!["/usr/local/bin/podid-demo"],
            env: vec![],
            shipped: true,
        },
        Image {
            name: "pause",
            repository: test("pause"),
            description: "pod sandbox: sleeps and reaps children until SIGINT/SIGTERM",
            base: None,
            files: vec![File {
                source: Source::StaticC("crates/images/pause/pause.c"),
                dest: "/pause",
                mode: 0o755,
            }],
            user: "0:0",
            entrypoint: vec!["/pause"],
            env: vec![],
            shipped: false,
        },
        Image {
            name: "busybox",
            repository: test("busybox"),
            description: "busybox-static (its wget segfaults; use nc)",
            base: Some(BUSYBOX_BASE),
            files: vec![],
            user: "0:0",
            entrypoint: vec!["/bin/sh"],
            env: vec![],
            shipped: false,
        },
        Image {
            name: "sdk-python",
            repository: test("sdk-python"),
            description: "Python azure-identity ManagedIdentityCredential probe: prints a token or the SDK's error",
            base: Some(PYTHON_BASE),
            files: vec![
                File {
                    source: Source::Pip { requirements: "crates/images/python/requirements.txt" },
                    dest: "/usr/local/lib/python3.11/dist-packages",
                    mode: 0o755,
                },
                File {
                    source: Source::Repo("crates/images/python/sdk_probe.py"),
                    dest: SDK_PROBE,
                    mode: 0o755,
                },
            ],
            user: NONROOT,
            entrypoint: vec![SDK_PROBE],
            env: vec![],
            shipped: false,
        },
        Image {
            name: "sdk-rust",
            repository: test("sdk-rust"),
            description: "Rust azure_identity ManagedIdentityCredential probe: prints a token or the SDK's error",
            base: Some(CA_BASE),
            files: vec![File {
                // crates/nmi/examples/sdk_probe.rs (see crates/images/Cargo.toml).
                source: Source::FeatureBin {
                    package: "podid-images",
                    feature: "sdk-probe",
                    name: "sdk-probe",
                },
                dest: SDK_PROBE,
                mode: 0o755,
            }],
            user: NONROOT,
            entrypoint: vec![SDK_PROBE],
            env: vec![],
            shipped: false,
        },
    ]
}

/// Path of the SDK probe in both SDK images (same flags and output: see `sdk_probe.py`).
pub const SDK_PROBE: &str = "/usr/local/bin/sdk-probe";

/// The image called `name`.
pub fn find(name: &str) -> Option<Image> {
    catalog().into_iter().find(|i| i.name == name)
}
