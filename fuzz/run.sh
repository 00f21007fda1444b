#!/usr/bin/env bash
# Runs every cargo-fuzz target for FUZZ_SECS seconds each (default 60) on stable Rust, without a
# sanitizer (`-s none`: Rust code is memory-safe; libFuzzer still finds panics, overflows with debug
# assertions, hangs and invariant violations). Corpora grow in fuzz/corpus/<target> from the
# checked-in seeds in fuzz/seeds/<target>; crashes land in fuzz/artifacts/<target>.
# Prints one `FUZZ-JSON {...}` line per target with executions, exec/s and coverage.
#   FUZZ_SECS=300 fuzz/run.sh                 all targets, 5 minutes each
#   FUZZ_SECS=20 fuzz/run.sh agent_request    one target
set -euo pipefail
cd "$(dirname "$0")"
secs=${FUZZ_SECS:-60}
# The instrumented build takes minutes; keep it in the cache folder so reruns (and CI on the same
# machine) reuse it, like the kube-apiserver binary.
target_dir=${PODID_FUZZ_TARGET:-${PODID_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podid}/fuzz-target}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t"
  dict=()
  [ -f "$t.dict" ] && dict=("-dict=$t.dict")
  log=$(mktemp)
  echo "[fuzz] $t for ${secs}s" >&2
  ok=true
  if ! cargo fuzz run -s none --target-dir "$target_dir" "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 "${dict[@]}" >"$log" 2>&1; then
    status=1
    ok=false
    tail -n 60 "$log" >&2
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  corpus=$(find "corpus/$t" -type f | wc -l)
  echo "FUZZ-JSON {\"target\":\"$t\",\"seconds\":$secs,\"executions\":${runs:-0},\"exec_per_sec\":${rate:-0},\"coverage_edges\":${cov:-0},\"features\":${ft:-0},\"corpus\":$corpus,\"ok\":$ok}"
  rm -f "$log"
done
exit $status
