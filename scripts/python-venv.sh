#!/usr/bin/env bash
# Creates the Python virtualenv `.venv` at the repository root with the pinned real Azure SDK clients the
# emulator's conformance tests run (crates/emulator/tests/python). Idempotent: a venv whose stamp matches
# the pins is reused and the script returns at once.
#
#   scripts/python-venv.sh               # create/update .venv, print its python path on stdout
#   PODID_VENV=/some/dir scripts/...     # put the venv elsewhere
#
# Progress goes to stderr; the last line on stdout is the venv's python interpreter.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PODID_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

PINS=(
  "azure-identity==1.27.0"
  "msal==1.39.0"
  "azure-mgmt-msi==7.1.0"
  "azure-mgmt-compute==39.0.0"
  "azure-mgmt-authorization==4.0.0"
  "azure-mgmt-resource==26.0.0"
  "pytest==9.2.0"
  "PyJWT==2.15.1"
  "cryptography==50.0.2"
  "requests==2.34.2"
)

say() { printf '[python-venv] %s\n' "$*" >&2; }

STAMP="$VENV/.podid-pins"
want="$(printf '%s\n' "${PINS[@]}")"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "$VENV/bin/python"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV" >&2
fi
say "installing ${#PINS[@]} pinned packages"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" >&2
printf '%s\n' "$want" >"$STAMP"
echo "$VENV/bin/python"
