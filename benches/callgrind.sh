#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind (exact and
# independent of other load on the machine, unlike CPU time), for nginx
# `proxy_pass`, the load harness's bare hyper proxy and `scopegate
# serve` with a cached token on a scoped route. Each proxy runs alone under
# valgrind; instrumentation is switched on after a warm-up, then N requests
# (h2load over HTTP/1.1, 16 connections) are counted; the upstream is
# `scopegate echo --fixed`. The database is a `scopegate dev` cluster in a
# temporary folder. See docs/operations.md, "Profiling".
#
#   benches/callgrind.sh              # all three, N=20000
#   N=5000 TARGETS=scopegate benches/callgrind.sh
#
# Needs valgrind, nginx (nginx-light), h2load (nghttp2-client), curl and the
# Postgres server binaries. The callgrind files stay in the printed folder
# for `callgrind_annotate`.
#
#   SYSCALLS=1 benches/callgrind.sh   # system calls per request instead
#
# With SYSCALLS=1 each proxy runs under `strace -c -f` (needs strace) and
# the calls of each kind over the warm-up and the N requests are divided
# by their number.
set -euo pipefail

N=${N:-20000}
TARGETS=${TARGETS:-nginx bare scopegate}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/scopegate-callgrind.XXXXXX)
chmod 755 "$WORK"
cd "$ROOT"

cargo build --release --bin scopegate >&2
E2E=$(cargo bench --bench e2e --no-run 2>&1 | grep -o 'target/release/deps/e2e-[0-9a-f]*' | tail -1)
BIN="$ROOT/target/release/scopegate"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 600); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer at $1" >&2; exit 1; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; (cd "$WORK" && "$BIN" --config dev.toml dev --reset >/dev/null 2>&1 || true); }
trap cleanup EXIT

UP=$(free_port); DEV=$(free_port); DEV_ADMIN=$(free_port)
sed -e "s/127.0.0.1:8080/127.0.0.1:$DEV/; s/127.0.0.1:8081/127.0.0.1:$DEV_ADMIN/" config/dev.toml > "$WORK/dev.toml"
"$BIN" echo --fixed --listen "127.0.0.1:$UP" >/dev/null 2>&1 & PIDS+=($!)
(cd "$WORK" && SCOPEGATE_DEV_UPSTREAM=127.0.0.1:$(free_port) exec "$BIN" --config dev.toml dev >dev.out 2>dev.err) & PIDS+=($!)
wait_http "http://127.0.0.1:$DEV/public/x"
PASSWORD=$(sed -n 's/^ *password: //p' "$WORK/dev.out" | head -1)
TOKEN=$(curl -s "http://127.0.0.1:$DEV/oauth/token" -d grant_type=password -d username=admin \
  --data-urlencode "password=$PASSWORD" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
DATA=$(cat "$WORK/.scopegate/cluster")
DB_URL="postgres://postgres:$(cat "$DATA.password")@127.0.0.1:$(cat "$DATA.port")/scopegate"

WARMUP=2000

# count NAME PORT: Ir (or system calls) per request of the process $VPID.
count() {
  local auth="authorization: Bearer $TOKEN" url="http://127.0.0.1:$2/bench/items?id=42"
  wait_http "http://127.0.0.1:$2/"
  h2load --h1 -n $WARMUP -c 16 -H "$auth" "$url" >/dev/null
  if [ -n "${SYSCALLS:-}" ]; then
    local codes; codes=$(h2load --h1 -n "$N" -c 16 -H "$auth" "$url" | grep 'status codes')
    # strace ends (and writes its summary) when the proxy it runs does.
    pkill -P "$VPID"; wait "$VPID" 2>/dev/null || true
    echo "$1: system calls per request over $((WARMUP + N)) ($codes)"
    awk -v n=$((WARMUP + N)) '$4 ~ /^[0-9]+$/ && $4 / n >= 0.01 {
      printf "  %-14s %5.2f\n", ($6 == "" ? $5 : $6), $4 / n }' "$WORK/st.$1"
    return
  fi
  callgrind_control -i on "$VPID" >/dev/null
  local codes; codes=$(h2load --h1 -n "$N" -c 16 -H "$auth" "$url" | grep 'status codes')
  callgrind_control -d "$VPID" >/dev/null
  kill "$VPID"; wait "$VPID" 2>/dev/null || true
  local total; total=$(callgrind_annotate "$(ls -t "$WORK"/cg."$1".*.1 | head -1)" 2>/dev/null |
    awk '/PROGRAM TOTALS/ && !seen {gsub(",", "", $1); print $1; seen = 1}')
  printf '%-10s %8d instructions per request   (%s)\n' "$1" $((total / N)) "$codes"
}

cg() {
  local name=$1; shift
  if [ -n "${SYSCALLS:-}" ]; then
    strace -c -f -o "$WORK/st.$name" "$@" >"$WORK/$name.log" 2>&1 & VPID=$!; PIDS+=($VPID); return
  fi
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.$name.%p" \
  --dump-instr=no --instr-atstart=no "$@" >"$WORK/$name.log" 2>&1 & VPID=$!; PIDS+=($VPID); }

for t in $TARGETS; do
  P=$(free_port)
  case $t in
    nginx)
      mkdir -p "$WORK/nginx"
      cat > "$WORK/nginx.conf" <<EOF
worker_processes 1; master_process off; daemon off;
pid $WORK/nginx/pid; error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http { access_log off;
  client_body_temp_path $WORK/nginx/b; proxy_temp_path $WORK/nginx/p; fastcgi_temp_path $WORK/nginx/f;
  uwsgi_temp_path $WORK/nginx/u; scgi_temp_path $WORK/nginx/s;
  upstream up { server 127.0.0.1:$UP; keepalive 128; }
  server { listen 127.0.0.1:$P;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
      cg nginx nginx -c "$WORK/nginx.conf" ;;
    bare)
      E2E_BARE_TOKENS=$TOKEN cg bare "$ROOT/$E2E" bare-proxy "127.0.0.1:$P" "127.0.0.1:$UP" ;;
    scopegate)
      cat > "$WORK/scopegate.toml" <<EOF
[server]
listen = "127.0.0.1:$P"
admin_listen = "127.0.0.1:$(free_port)"

[[routes]]
name = "bench"
path = "/bench"
upstream = "http://127.0.0.1:$UP"
scopes = ["scopegate:admin"]
EOF
      SCOPEGATE_LOG=warn SCOPEGATE_DATABASE_URL=$DB_URL cg scopegate "$BIN" --config "$WORK/scopegate.toml" serve ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
  count "$t" "$P"
done
echo "files: $WORK" >&2
trap - EXIT
cleanup
