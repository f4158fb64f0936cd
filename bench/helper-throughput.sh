#!/usr/bin/env bash
# Benchmark (issue 9): the loopback helper against nginx as a reverse proxy, in one run on
# loopback, with wrk (Debian) as the load:
#   1. the upstream directly (nginx answering a small JSON body: the baseline),
#   2. nginx as a reverse proxy in front of it, adding an Authorization header, with a
#      keep-alive pool to the upstream and as many worker processes as the helper has
#      threads,
#   3. Keyport's helper (`keyport agent`, release build) in front of the same upstream, for
#      a profile whose header it adds (frappe-token: "Authorization: token key:secret").
# Prints req/s, p50 and p99 for each and the helper's ratios to nginx beside the target:
#   helper req/s >= nginx req/s, helper p99 <= nginx p99
# and, since all of them share the machine's cores (so throughput follows the CPU a request
# costs), the CPU time each proxy (and the upstream) spent per request, user and system.
# Usage: bench/helper-throughput.sh [SECONDS] [CONNECTIONS] [ROUNDS]  (default 10 s, 64
# connections, 3 rounds; each round runs the three in turn, and the best round of each is
# reported, so a noisy moment does not decide). Needs Debian nginx and wrk (installed when
# missing) and scripts/install-deps.sh's packages. Runs itself in a throw-away desktop
# session (the agent needs a keychain).
set -euo pipefail
SELF=$(readlink -f "$0")
cd "$(dirname "$SELF")/.."
SECS=${1:-10}
CONNS=${2:-64}
ROUNDS=${3:-3}
# The agent's runtime has two worker threads (crates/keyport-cli/src/agent_cmd.rs).
THREADS=2
if [ -z "${KEYPORT_BENCH_INNER:-}" ]; then
  scripts/install-deps.sh
  missing=""
  for p in nginx wrk; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
  cargo build --release -q -p keyport-cli
  exec env KEYPORT_BENCH_INNER=1 HEADLESS_X=0 tests/support/headless-session.sh "$SELF" "$SECS" "$CONNS" "$ROUNDS"
fi

K=$PWD/target/release/keyport
W=$(mktemp -d)
chmod 755 "$W"
cleanup() {
  [ -n "${AGENT:-}" ] && kill "$AGENT" 2>/dev/null
  for n in up proxy; do
    [ -f "$W/$n.pid" ] && kill "$(cat "$W/$n.pid")" 2>/dev/null
  done
  rm -rf "$W"
}
trap cleanup EXIT
export KEYPORT_CONFIG_DIR=$W/config KEYPORT_RUNTIME_DIR=$W/run
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port)
PROXY=$(free_port)
HELPER=$(free_port)

nginx_conf() { # NAME WORKERS SERVER-BLOCK
  cat >"$W/$1.conf" <<EOF
worker_processes $2;
pid $W/$1.pid;
error_log $W/$1.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $W/$1-body;
  proxy_temp_path $W/$1-proxy;
  fastcgi_temp_path $W/$1-fcgi;
  uwsgi_temp_path $W/$1-uwsgi;
  scgi_temp_path $W/$1-scgi;
  keepalive_requests 100000;
  $3
}
EOF
  nginx -p "$W" -c "$W/$1.conf"
}
# The upstream: one worker answering a small JSON body.
nginx_conf up 1 "server { listen 127.0.0.1:$UP; location / { default_type application/json; return 200 '{\"ok\":true}'; } }"
# nginx as the reference reverse proxy.
nginx_conf proxy "$THREADS" "upstream api { server 127.0.0.1:$UP; keepalive 128; }
  server { listen 127.0.0.1:$PROXY; location / {
    proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection \"\";
    proxy_set_header Authorization \"token bench-key:bench-secret\"; } }"

printf 'bench-secret\n' | "$K" profile add bench --preset frappe-token --set "base_url=http://127.0.0.1:$UP" \
  --set api_key=bench-key --secret api_secret >/dev/null 2>&1
"$K" agent --foreground --no-notifications --helper-port "$HELPER" 2>"$W/agent.log" &
AGENT=$!
until "$K" status >/dev/null 2>&1; do sleep 0.02; done
KEY=$("$K" helper key)

# All three answer, and both proxies add the header (the upstream would not check it, so
# check the proxies' requests instead: a request without the key must be refused).
for url in "http://127.0.0.1:$UP/x" "http://127.0.0.1:$PROXY/x"; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 200 ] || { echo "$url does not answer" >&2; exit 1; }
done
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Keyport-Key: $KEY" "http://127.0.0.1:$HELPER/bench/x")" = 200 ] ||
  { echo "the helper does not answer" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HELPER/bench/x")" = 401 ] ||
  { echo "the helper answers without a key" >&2; exit 1; }

# wrk's script sends the key header (not on its command line: `ps` would show it).
cat >"$W/key.lua" <<EOF
wrk.headers["X-Keyport-Key"] = "$KEY"
EOF
# CPU ticks (user, system) of every thread of the given processes.
ticks() {
  local u=0 s=0 p t
  for p in "$@"; do
    for t in /proc/"$p"/task/*; do
      read -r tu ts < <(awk '{print $14, $15}' "$t/stat")
      u=$((u + tu)); s=$((s + ts))
    done
  done
  echo "$u $s"
}
UPSTREAM_PIDS="$(cat "$W/up.pid") $(pgrep -P "$(cat "$W/up.pid")" | tr '\n' ' ')"
PROXY_PIDS="$(pgrep -P "$(cat "$W/proxy.pid")" | tr '\n' ' ')"
run() { # NAME URL PIDS [wrk args...] -> "NAME req/s p50ms p99ms non2xx requests proxy-ticks upstream-ticks"
  local name=$1 url=$2 pids=$3
  shift 3
  # shellcheck disable=SC2086
  local p0 u0 p1 u1
  p0=$(ticks $pids); u0=$(ticks $UPSTREAM_PIDS)
  wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency "$@" "$url" >"$W/wrk.out"
  # shellcheck disable=SC2086
  p1=$(ticks $pids); u1=$(ticks $UPSTREAM_PIDS)
  python3 - "$name" "$W/wrk.out" "$p0" "$p1" "$u0" "$u1" <<'EOF'
import re, sys
name, text = sys.argv[1], open(sys.argv[2]).read()
def delta(a, b):
    (au, as_), (bu, bs) = (map(int, a.split()), map(int, b.split()))
    return f"{bu - au}:{bs - as_}"
def ms(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
errs = re.search(r"Socket errors:.*", text)
n = int(re.search(r"(\d+) requests in", text).group(1))
print(name, rps, p50, p99, (int(bad.group(1)) if bad else 0) + (1 if errs else 0), n,
      delta(sys.argv[3], sys.argv[4]), delta(sys.argv[5], sys.argv[6]))
EOF
}
: >"$W/results"
for round in $(seq "$ROUNDS"); do
  run direct "http://127.0.0.1:$UP/x" "$UPSTREAM_PIDS" >>"$W/results"
  run nginx "http://127.0.0.1:$PROXY/x" "$PROXY_PIDS" >>"$W/results"
  run keyport "http://127.0.0.1:$HELPER/bench/x" "$AGENT" -s "$W/key.lua" >>"$W/results"
done
AGENT_RSS=$(awk '/VmHWM/ {print $2}' "/proc/$AGENT/status")
python3 - "$W/results" "$SECS" "$CONNS" "$THREADS" "$AGENT_RSS" <<'EOF'
import sys
rows = [l.split() for l in open(sys.argv[1])]
secs, conns, threads, rss = sys.argv[2:6]
best, cpu = {}, {}
hz = int(__import__("os").sysconf("SC_CLK_TCK"))
for name, rps, p50, p99, bad, n, proxy, up in rows:
    if int(bad):
        sys.exit(f"{name}: {bad} failed requests")
    r = (float(rps), float(p50), float(p99))
    if name not in best or r[0] > best[name][0]:
        best[name] = r
    # CPU per request over all rounds: (user, system) of the proxy, and the upstream's total
    pu, ps = map(int, proxy.split(":"))
    uu, us = map(int, up.split(":"))
    c = cpu.setdefault(name, [0, 0, 0, 0])
    c[0] += pu; c[1] += ps; c[2] += uu + us; c[3] += int(n)
print(f"wrk, {threads} threads, {conns} connections, {secs} s per run, best of {len(rows)//3} rounds; "
      f"nginx and the helper with {threads} workers/threads")
print(f"{'':<28} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
labels = {"direct": "upstream directly", "nginx": "nginx reverse proxy", "keyport": "keyport helper"}
for n in ("direct", "nginx", "keyport"):
    r = best[n]
    print(f"{labels[n]:<28} {r[0]:>10.0f} {r[1]:>8.2f} {r[2]:>8.2f}")
k, n = best["keyport"], best["nginx"]
print(f"helper / nginx req/s: {k[0]/n[0]:.2f}x (target >= 1.00)")
print(f"helper / nginx p99:   {k[2]/n[2]:.2f}x (target <= 1.00)")
us = lambda ticks, n: ticks * 1e6 / hz / n
print(f"CPU per request, all rounds:  {'proxy user':>10} {'proxy sys':>10} {'upstream':>10}")
for name, label in (("nginx", "nginx reverse proxy"), ("keyport", "keyport helper")):
    pu, ps, up, n = cpu[name]
    print(f"{label:<29} {us(pu, n):>8.2f}us {us(ps, n):>8.2f}us {us(up, n):>8.2f}us")
print(f"agent peak RSS after the runs: {int(rss)/1024:.1f} MB")
EOF
