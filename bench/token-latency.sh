#!/usr/bin/env bash
# Benchmark (issue 7, item 8): `keyport token NAME` and `keyport header NAME` answered by a
# running agent, side by side with oidc-agent's `oidc-token` (a peer token agent) answering
# a cached token, both for the same OpenID provider (npm oidc-provider, tests/oidc), in one
# run. Prints the median wall time of each and the ratio beside the target:
#   keyport token (agent running)   median <= oidc-token's
# Usage: bench/token-latency.sh [ROUNDS] [RUNS]  (default 5 rounds of 200 runs per command;
# the rounds alternate the order, and the medians are over all runs). Release build; needs
# Debian hyperfine and oidc-agent-cli (installed when missing) and the packages of
# scripts/install-deps.sh. Runs itself in a throw-away desktop session.
set -euo pipefail
SELF=$(readlink -f "$0")
cd "$(dirname "$SELF")/.."
ROUNDS=${1:-5}
RUNS=${2:-200}
if [ -z "${KEYPORT_BENCH_INNER:-}" ]; then
  scripts/install-deps.sh --test
  for p in hyperfine oidc-agent-cli; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="${missing:-} $p"
  done
  if [ -n "${missing:-}" ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
  cargo build --release -q -p keyport-cli
  exec env KEYPORT_BENCH_INNER=1 HEADLESS_X=0 tests/support/headless-session.sh "$SELF" "$ROUNDS" "$RUNS"
fi

K=$PWD/target/release/keyport
W=$(mktemp -d)
cleanup() {
  [ -n "${AGENT:-}" ] && kill "$AGENT" 2>/dev/null
  [ -n "${OIDCD_PID:-}" ] && kill "$OIDCD_PID" 2>/dev/null
  [ -n "${IDP:-}" ] && kill "$IDP" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
export KEYPORT_CONFIG_DIR=$W/config KEYPORT_RUNTIME_DIR=$W/run

# The OpenID provider, with access tokens living an hour (both agents answer from cache).
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd tests/oidc && PORT=$PORT AT_TTL=3600 exec node server.mjs >"$W/idp.log" 2>&1 </dev/null) &
IDP=$!
for _ in $(seq 200); do grep -q ready "$W/idp.log" && break; sleep 0.05; done
ISS=http://127.0.0.1:$PORT

# Keyport: a profile logged in through the browser (scripted), served by a running agent.
# A second login gives oidc-agent a refresh token of the same client (keyport-bench).
login() {
  printf 'bench-secret-5e1d\n' | "$K" profile add "$1" --preset 4insight-user --set "issuer=$ISS" \
    --set client_id=keyport-bench --set "scopes=openid offline_access api" --secret client_secret 2>/dev/null
  BROWSER=$PWD/tests/support/fake-browser.py "$K" login "$1" --timeout 30 2>/dev/null
}
login bench
login for-oidc-agent
RT=$(secret-tool lookup service keyport-token username for-oidc-agent |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["refresh_token"])')
"$K" profile rm for-oidc-agent >/dev/null 2>&1
"$K" agent --foreground --no-notifications 2>"$W/agent.log" &
AGENT=$!
until "$K" status >/dev/null 2>&1; do sleep 0.02; done

# oidc-agent with an account for the same provider and client, from that refresh token.
export OIDC_CONFIG_DIR=$W/oidc-agent
mkdir -p "$OIDC_CONFIG_DIR"
eval "$(oidc-agent --quiet)"
OIDC_ENCRYPTION_PW=bench-pw OIDC_REFRESH_TOKEN=$RT oidc-gen --iss="$ISS" --client-id=keyport-bench \
  --client-secret=bench-secret-5e1d --rt-env --pw-env --scope="openid offline_access api" \
  --confirm-default --no-url-call --prompt=none bench >/dev/null </dev/null
OT=$(command -v oidc-token)

# Both hand out a working token of the same provider.
for t in "$("$K" token bench)" "$("$OT" bench)"; do
  code=$(python3 -c 'import sys,urllib.request as u
r=u.Request(sys.argv[1]+"/me",headers={"Authorization":"Bearer "+sys.argv[2]})
print(u.urlopen(r).status)' "$ISS" "$t")
  [ "$code" = 200 ] || { echo "a token the provider rejects" >&2; exit 1; }
done

# (keyport-cli is the full command line that `keyport` hands every other command to: what
# `keyport token` cost before the front binary answered it.)
cmds=("$K token bench" "$K header bench" "$OT bench" "$K-cli token bench")
for r in $(seq "$ROUNDS"); do
  # alternate the order between rounds, so drift on a shared machine hits all alike
  if [ $((r % 2)) = 0 ]; then order=(3 2 1 0); else order=(0 1 2 3); fi
  hyperfine -N --style none --warmup 20 --runs "$RUNS" --export-json "$W/round$r.json" \
    "${cmds[${order[0]}]}" "${cmds[${order[1]}]}" "${cmds[${order[2]}]}" "${cmds[${order[3]}]}" \
    >/dev/null 2>&1
done

python3 - "$W" "$ROUNDS" "$K" "$OT" <<'PY'
import json, statistics, sys
w, rounds, k, ot = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
times = {}
for r in range(1, rounds + 1):
    for res in json.load(open(f"{w}/round{r}.json"))["results"]:
        times.setdefault(res["command"], []).extend(res["times"])
def q(c, p):
    t = sorted(times[c])
    return t[int(p * (len(t) - 1))] * 1000
ref = statistics.median(times[f"{ot} bench"]) * 1000
print(f"\n{'command (agent running, cached token)':<44} {'median':>9} {'p90':>9} {'runs':>6}   vs oidc-token")
for label, c in [("keyport token NAME", f"{k} token bench"), ("keyport header NAME", f"{k} header bench"),
                 ("oidc-token ACCOUNT (oidc-agent 4.2)", f"{ot} bench"),
                 ("keyport-cli token NAME (full CLI, same agent)", f"{k}-cli token bench")]:
    m = statistics.median(times[c]) * 1000
    print(f"{label:<44} {m:>7.2f}ms {q(c, 0.9):>7.2f}ms {len(times[c]):>6}   {m / ref:.2f}x")
m = statistics.median(times[f"{k} token bench"]) * 1000
print(f"\ntarget: keyport token median <= oidc-token median: {m:.2f} ms vs {ref:.2f} ms -> "
      + ("met" if m <= ref else "NOT met"))
PY
