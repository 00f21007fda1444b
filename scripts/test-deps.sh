#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, idempotently:
#   - etcd and a kube-apiserver built from Debian's source package (cached; see kube-apiserver.sh)
#   - the Python virtualenv with the real Azure SDKs used to check the emulator (.venv)
# Later calls take a few seconds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/kube-apiserver.sh" >/dev/null
if [ -x "$root/scripts/python-venv.sh" ]; then
  "$root/scripts/python-venv.sh"
fi
