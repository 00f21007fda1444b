#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, idempotently:
#   - etcd and a kube-apiserver built from Debian's source package (cached; see kube-apiserver.sh)
#   - iptables and conntrack (the node agent's interception tests use real rules in network namespaces)
#   - the Python virtualenv with the real Azure SDKs (.venv; see python-venv.sh)
# Later calls take a few seconds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
say() { printf '[test-deps] %s\n' "$*" >&2; }

missing=()
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v conntrack >/dev/null 2>&1 || missing+=(conntrack)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    say "missing ${missing[*]}: install them as root (apt-get install ${missing[*]})"; exit 1
  fi
  say "installing ${missing[*]}"
  apt-get update -q >&2 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
fi
"$root/scripts/kube-apiserver.sh" >/dev/null
if [ -x "$root/scripts/python-venv.sh" ]; then
  "$root/scripts/python-venv.sh" >/dev/null
fi
