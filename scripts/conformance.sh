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
JOBS=${CONFORMANCE_JOBS:-4}
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
run_one() {
  local scenario=$1 log
  log=$OUT/$(echo "$scenario" | tr '/' '_').log
  if "$NODE" "$CLI" client --scenario "$scenario" --timeout 180000 -o "$OUT/saved" \
       --command "$PYTHON $ROOT/tests/conformance/client.py" >"$log" 2>&1; then
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
