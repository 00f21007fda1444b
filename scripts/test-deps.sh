#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, idempotently:
#   - etcd and the Kubernetes server binaries (kube-apiserver, kube-controller-manager, kube-scheduler,
#     kubelet, kube-proxy) built from Debian's source package (cached; see kubernetes.sh)
#   - iptables and conntrack (the node agent's interception tests use real rules in network namespaces)
#   - the node runtime for the test kit's real nodes: containerd, runc, the CNI plugins; mmdebstrap,
#     busybox-static and skopeo for the images built here (make images)
#   - kubectl (the deploy/ kustomize tests): the `kubectl` package if the machine's apt has one, else
#     Debian's `kubernetes-client` (kubectl v1.20.2, the same source kubernetes.sh builds from)
#   - the Python virtualenv with the real Azure SDKs (.venv; see python-venv.sh)
#   - the real Node Azure SDK under target/node-sdk (see node-sdk.sh)
#   - cargo-fuzz and g++ for the bounded fuzz run of `make ci` (fuzz/run.sh; docs/fuzzing.md)
# Later calls take a few seconds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
say() { printf '[test-deps] %s\n' "$*" >&2; }

missing=()
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v conntrack >/dev/null 2>&1 || missing+=(conntrack)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
command -v containerd >/dev/null 2>&1 || missing+=(containerd)
command -v runc >/dev/null 2>&1 || missing+=(runc)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
[ -x /bin/busybox ] || missing+=(busybox-static)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    say "missing ${missing[*]}: install them as root (apt-get install ${missing[*]})"; exit 1
  fi
  say "installing ${missing[*]}"
  apt-get update -q >&2 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
fi
if ! command -v kubectl >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    say "missing kubectl: install it as root (apt-get install kubectl, or kubernetes-client on Debian)"; exit 1
  fi
  apt-get update -q >&2 || true
  if apt-cache show kubectl >/dev/null 2>&1; then
    say "installing kubectl"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q kubectl >&2
  else
    say "installing kubernetes-client (Debian's kubectl)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q kubernetes-client >&2
  fi
  command -v kubectl >/dev/null 2>&1 || { say "kubectl is still missing after the install"; exit 1; }
fi
"$root/scripts/kubernetes.sh" >/dev/null
if [ -x "$root/scripts/python-venv.sh" ]; then
  "$root/scripts/python-venv.sh" >/dev/null
fi
"$root/scripts/node-sdk.sh"
# Fuzzing (make fuzz / fuzz-ci): cargo-fuzz (built once into ~/.cargo/bin) and a C++ compiler for
# libFuzzer.
if ! command -v c++ >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    say "missing a C++ compiler for libFuzzer: install it as root (apt-get install g++)"; exit 1
  fi
  say "installing g++ (libFuzzer)"
  apt-get update -q >&2 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q g++ >&2
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  cargo install cargo-fuzz --locked >&2
fi
