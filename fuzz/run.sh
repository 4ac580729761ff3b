#!/usr/bin/env bash
# Fuzz one target for a bounded time with AFL++ (`cargo afl`, stable Rust).
#
#   fuzz/run.sh TARGET [MINUTES]      # MINUTES defaults to 10
#
# TARGET is one of: path_route bearer token_form login_form (see
# fuzz/src/<TARGET>.rs for what each checks). Builds the targets
# instrumented, then runs afl-fuzz on fuzz/seeds/TARGET for MINUTES
# (`-V`), resuming fuzz/out/TARGET when an earlier run left it. Prints the
# run's figures and exits 1 when AFL++ saved a crash or a hang (in
# fuzz/out/TARGET/default/{crashes,hangs}; replay one with
# `fuzz/target/release/TARGET < FILE`), 2 on a usage or setup error.
#
# Needs cargo-afl once: `cargo install cargo-afl` (it builds AFL++ itself).
set -euo pipefail
cd "$(dirname "$0")"

targets="path_route bearer token_form login_form"
target=${1:-}
minutes=${2:-10}
if [[ -z "$target" || " $targets " != *" $target "* ]] || ! [[ "$minutes" =~ ^[0-9]+$ ]] || ((minutes < 1)); then
  echo "usage: fuzz/run.sh TARGET [MINUTES]   (TARGET: $targets)" >&2
  exit 2
fi
if ! cargo afl --version >/dev/null 2>&1; then
  echo "cargo-afl is missing: cargo install cargo-afl" >&2
  exit 2
fi

cargo afl build --release --bin "$target"

out="out/$target"
mkdir -p out
# A shared machine: no core pinning, no CPU governor checks; a core pattern
# that pipes to a handler only slows crash detection down.
export AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export AFL_AUTORESUME=1 AFL_NO_UI=1
cargo afl fuzz -V "$((minutes * 60))" -t 2000 -i "seeds/$target" -o "$out" \
  "target/release/$target" >"out/$target.log" 2>&1 || {
  echo "afl-fuzz failed; the end of out/$target.log:" >&2
  tail -n 30 "out/$target.log" >&2
  exit 2
}

stats="$out/default/fuzzer_stats"
stat() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
crashes=$(stat saved_crashes)
hangs=$(stat saved_hangs)
echo "$target: run_time=$(stat run_time)s execs_done=$(stat execs_done)" \
  "execs_per_sec=$(stat execs_per_sec) corpus_count=$(stat corpus_count)" \
  "edges_found=$(stat edges_found)/$(stat total_edges) stability=$(stat stability)" \
  "saved_crashes=$crashes saved_hangs=$hangs"
if ((crashes > 0 || hangs > 0)); then
  ls "$out/default/crashes" "$out/default/hangs" >&2
  exit 1
fi
