#!/usr/bin/env bash
# The one test command for the whole repository: every Go module in it is vetted, then tested
# with the race detector. Fuzz targets run briefly as a smoke test (FUZZTIME, default 20000
# executions each),
# and the mesh benchmark harness runs in its quick mode when the benchmarks module exists.
set -euo pipefail
cd "$(dirname "$0")/.."

# A count rather than a duration: with a duration, Go 1.26's fuzz coordinator can report the
# end of -fuzztime itself as a failure ("context deadline exceeded", no failing input) when a
# worker is busy as the time runs out (go.dev/issue/75804, fixed in Go 1.27).
fuzztime=${FUZZTIME:-20000x}
modules=(.)
[ -f benchmarks/go.mod ] && modules+=(benchmarks)
[ -f meshlint/go.mod ] && modules+=(meshlint)

for mod in "${modules[@]}"; do
  echo "== go vet ($mod)"
  (cd "$mod" && go vet ./...)
done

for mod in "${modules[@]}"; do
  echo "== go test -race ($mod)"
  (cd "$mod" && go test -race -count=1 -timeout 15m ./...)
done

# Each fuzz target gets a short run, in the module that holds it; go test -fuzz takes one
# target in one package at a time.
if [ "$fuzztime" != "0" ]; then
  while IFS= read -r line; do
    file=${line%%:*}
    name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]+).*/\1/' <<<"${line#*:}")
    mod=.
    for m in "${modules[@]}"; do
      if [ "$m" != . ] && [[ $file == "$m"/* ]]; then mod=$m; fi
    done
    pkg=./$(dirname "${file#"$mod"/}")
    echo "== fuzz ($mod) $pkg $name ($fuzztime)"
    (cd "$mod" && go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg")
  done < <(git ls-files '*_test.go' | grep -v '^benchmarks/' | xargs -r grep -H -E '^func Fuzz[A-Za-z0-9_]+\(' || true)
fi

if [ -d benchmarks/cmd/meshbench ]; then
  echo "== meshbench -quick"
  (cd benchmarks && go run ./cmd/meshbench -quick -out "${TMPDIR:-/tmp}/meshbench-smoke")
fi
echo "all checks passed"
