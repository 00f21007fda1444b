#!/usr/bin/env bash
# Installs the real Node Azure SDK (@azure/identity, pinned) that crates/nmi/tests/sdk_refusals.rs runs
# inside pod network namespaces, under target/node-sdk (outside git). Idempotent: an install of the
# pinned version is reused and the script returns at once. Needs node and npm (installed from Debian
# when missing and run as root).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${PODID_NODE_SDK:-$ROOT/target/node-sdk}"
PIN="4.13"
say() { printf '[node-sdk] %s\n' "$*" >&2; }

have() {
  local pkg="$DIR/node_modules/@azure/identity/package.json"
  [ -f "$pkg" ] && grep -q "\"version\": \"$PIN\." "$pkg"
}
if have; then exit 0; fi
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then say "missing node/npm: install them as root (apt-get install nodejs npm)"; exit 1; fi
  say "installing nodejs and npm"
  apt-get update -q >&2 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >&2
fi
mkdir -p "$DIR"
say "installing @azure/identity@$PIN in $DIR"
(cd "$DIR" && npm install --no-audit --no-fund --silent "@azure/identity@$PIN" >&2)
have || { say "@azure/identity $PIN is still missing after the install"; exit 1; }
