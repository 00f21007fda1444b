#!/usr/bin/env bash
# Installs etcd (Debian's etcd-server) and builds the Kubernetes v1.20.2 server binaries the test kit
# runs — kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy — from Debian's
# `kubernetes` source package, once, in one pass, into a cache folder. Later calls reuse the cached
# binaries and return at once. A binary that is missing or reports another version is rebuilt (with
# every other missing one, in the same pass).
#
#   scripts/kubernetes.sh                # install/build if needed, print the cache's bin/ on stdout
#   PODID_CACHE=/some/dir scripts/...    # cache elsewhere (default: ${XDG_CACHE_HOME:-~/.cache}/podid)
#   PODID_KUBE_BINARIES="kube-apiserver" scripts/kubernetes.sh   # only these binaries
#
# Progress goes to stderr; the last line on stdout is the folder holding the binaries.
set -euo pipefail

K8S_SRC_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
CACHE="${PODID_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podid}"
BIN_DIR="$CACHE/bin"
read -r -a WANT <<<"${PODID_KUBE_BINARIES:-kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy}"

say() { printf '[kubernetes] %s\n' "$*" >&2; }
die() { printf '[kubernetes] error: %s\n' "$*" >&2; exit 1; }

# kubelet prints "Kubernetes v1.20.2"; the others too. A binary is good if it runs and says v1.20.2.
have() {
  local bin="$BIN_DIR/$1"
  [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q 'v1.20.2'
}

need_root() {
  [ "$(id -u)" = 0 ] || die "$1 needs root (apt-get install). Run this script as root once, or install it yourself: $2"
}

APT_UPDATED=0
apt_update_once() {
  if [ "$APT_UPDATED" = 0 ]; then
    say "apt-get update"
    apt-get update -q >&2
    APT_UPDATED=1
  fi
}

ensure_etcd() {
  if command -v etcd >/dev/null 2>&1; then return; fi
  command -v apt-get >/dev/null 2>&1 || die "etcd is missing and there is no apt-get; install etcd 3.4+ and put it on PATH"
  need_root "installing etcd" "apt-get install etcd-server"
  say "installing etcd-server with apt"
  apt_update_once
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >&2
  command -v etcd >/dev/null 2>&1 || die "etcd-server installed but no etcd on PATH"
}

# apt-get source needs deb-src entries; copy the machine's own Debian entries (same mirror) as deb-src.
ensure_deb_src() {
  local out=/etc/apt/sources.list.d/podid-deb-src.sources
  [ -f "$out" ] && return
  local src=/etc/apt/sources.list.d/debian.sources
  [ -f "$src" ] || die "no $src to derive a deb-src entry from; add a deb-src line for bookworm and bookworm-security yourself"
  say "adding deb-src entries derived from $src"
  sed -e 's/^Types:.*/Types: deb-src/' "$src" > "$out"
  APT_UPDATED=0
}

unpack_source() {
  local work=$1
  rm -rf "$work" && mkdir -p "$work"
  cd "$work"
  say "downloading Debian source package kubernetes=$K8S_SRC_VERSION"
  apt-get source --download-only "kubernetes=$K8S_SRC_VERSION" >&2
  local tarball
  tarball=$(ls kubernetes_*.orig.tar.gz | head -1)
  [ -n "$tarball" ] || die "source download produced no orig tarball"
  say "unpacking $tarball"
  mkdir src && tar xzf "$tarball" -C src --strip-components=1
  cd src
  # The vendored reflect2 v1.0.1 segfaults under Go >= 1.18; Debian's 1.0.2 works.
  say "swapping vendored modern-go/reflect2 for Debian's 1.0.2"
  rm -rf vendor/github.com/modern-go/reflect2 && mkdir -p vendor/github.com/modern-go/reflect2
  cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go /usr/share/gocode/src/github.com/modern-go/reflect2/*.s \
     vendor/github.com/modern-go/reflect2/
  rm -f vendor/github.com/modern-go/reflect2/*_test.go
}

build() {
  local missing=("$@")
  command -v apt-get >/dev/null 2>&1 || die "building Kubernetes needs apt-get (Debian bookworm) for the source package and Go"
  need_root "building ${missing[*]}" "apt-get install golang-go rsync golang-github-modern-go-reflect2-dev"
  local free_kb
  free_kb=$(df -Pk "$CACHE" | awk 'NR==2 {print $4}')
  [ "${free_kb:-0}" -gt 8000000 ] || die "need about 8 GB free under $CACHE for the build, have $((free_kb / 1024)) MB"

  ensure_deb_src
  apt_update_once
  say "installing build dependencies (golang-go, rsync, reflect2)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q golang-go rsync make golang-github-modern-go-reflect2-dev >&2

  local work="$CACHE/build"
  unpack_source "$work"
  local what=""
  for b in "${missing[@]}"; do what="$what cmd/$b"; done
  say "building${what} (about 9 minutes for kube-apiserver alone on 2 cores, 14 for all five; log: $work/build.log)"
  local start=$SECONDS
  ( HOME="$work/home" make WHAT="${what# }" KUBE_BUILD_PLATFORMS=linux/amd64 >"$work/build.log" 2>&1 ) &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 30
    say "  still building... $((SECONDS - start))s, last: $(tail -n 1 "$work/build.log" | cut -c1-100)"
  done
  wait "$pid" || { tail -n 30 "$work/build.log" >&2; die "make failed (see $work/build.log)"; }
  mkdir -p "$BIN_DIR"
  for b in "${missing[@]}"; do
    cp "_output/bin/$b" "$BIN_DIR/$b.tmp" && mv "$BIN_DIR/$b.tmp" "$BIN_DIR/$b"
  done
  say "built in $((SECONDS - start))s"
  cd "$CACHE" && rm -rf "$work"
}

mkdir -p "$CACHE"
ensure_etcd
missing=()
for b in "${WANT[@]}"; do have "$b" || missing+=("$b"); done
if [ ${#missing[@]} -gt 0 ]; then
  build "${missing[@]}"
  for b in "${missing[@]}"; do
    have "$b" || die "the built $b does not report v1.20.2: $("$BIN_DIR/$b" --version 2>&1 || true)"
  done
fi
for b in "${WANT[@]}"; do "$BIN_DIR/$b" --version > "$BIN_DIR/$b.version" 2>&1; done
say "ready in $BIN_DIR: ${WANT[*]} ($(cat "$BIN_DIR/kube-apiserver.version" 2>/dev/null || echo v1.20.2)), etcd $(etcd --version 2>/dev/null | head -1 | awk '{print $3}')"
echo "$BIN_DIR"
