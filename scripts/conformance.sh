#!/usr/bin/env bash
# Runs every client scenario of the official MCP conformance suite through the
# project's MCP client (tests/conformance/client.py).
#
#   scripts/conformance.sh [SCENARIO...]     (default: every client scenario)
#
# The suite needs Node 22: it and the suite are installed from npm into
# .conformance/ (ignored by git, reused on later runs). Prints one line per
# scenario (PASS/FAIL) and a total; exits 1 when any scenario failed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SUITE_VERSION=0.1.16
NODE_VERSION=22
DIR=$ROOT/.conformance
# Each scenario is mostly waiting (Node servers, HTTP round trips); 3 at a time keeps a
# 2-core machine busy without starving it.
JOBS=${CONFORMANCE_JOBS:-3}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}

if [[ ! -x $DIR/node_modules/.bin/node ]] \
   || ! grep -q "\"version\": \"$SUITE_VERSION\"" "$DIR/node_modules/@modelcontextprotocol/conformance/package.json" 2>/dev/null; then
  mkdir -p "$DIR"
  [[ -f $DIR/package.json ]] || echo '{"private": true}' > "$DIR/package.json"
  (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error \
     "node@$NODE_VERSION" "@modelcontextprotocol/conformance@$SUITE_VERSION" >&2)
fi
NODE=$DIR/node_modules/.bin/node
CLI=$DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js
[[ $("$NODE" --version) == v$NODE_VERSION.* ]] || { echo "node $NODE_VERSION was not installed in $DIR" >&2; exit 2; }

if (( $# )); then
  SCENARIOS=("$@")
else
  mapfile -t SCENARIOS < <("$NODE" "$CLI" list 2>&1 | sed -n '/^Client scenarios/,$p' | sed -n 's/^  - \([^ ]*\).*/\1/p')
fi
(( ${#SCENARIOS[@]} )) || { echo "the suite listed no client scenarios" >&2; exit 2; }

OUT=$DIR/results
rm -rf "$OUT"; mkdir -p "$OUT"

# One Python process pays the client's imports (the mcp SDK: seconds under load) and forks
# a client per scenario; the suite's command is a standard-library shim that hands it its run.
SOCK=$(mktemp -u "${TMPDIR:-/tmp}/conformance-XXXXXX.sock")
"$PYTHON" "$ROOT/tests/conformance/forkserver.py" "$SOCK" 2>"$OUT/forkserver.log" &
FORKSERVER=$!
trap 'kill "$FORKSERVER" 2>/dev/null; rm -f "$SOCK"' EXIT
for _ in $(seq 600); do
  [[ -S $SOCK ]] && break
  kill -0 "$FORKSERVER" 2>/dev/null || { cat "$OUT/forkserver.log" >&2; echo "the client's fork server did not start" >&2; exit 2; }
  sleep 0.2
done
[[ -S $SOCK ]] || { echo "the client's fork server did not start within 120 s" >&2; exit 2; }
export CONFORMANCE_FORKSERVER=$SOCK
run_one() {
  local scenario=$1 log
  log=$OUT/$(echo "$scenario" | tr '/' '_').log
  if "$NODE" "$CLI" client --scenario "$scenario" --timeout 180000 -o "$OUT/saved" \
       --command "$PYTHON -S $ROOT/tests/conformance/shim.py" >"$log" 2>&1; then
    echo "PASS $scenario"
  else
    echo "FAIL $scenario (log: $log)"
  fi
}
export -f run_one
export NODE CLI OUT PYTHON ROOT
printf '%s\n' "${SCENARIOS[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one "$@"' _ {} | tee "$OUT/summary.txt"
passed=$(grep -c '^PASS' "$OUT/summary.txt" || true)
echo "conformance: $passed/${#SCENARIOS[@]} client scenarios passed"
[[ $passed -eq ${#SCENARIOS[@]} ]]
