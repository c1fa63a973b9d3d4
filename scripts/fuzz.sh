#!/usr/bin/env bash
# make fuzz: run every fuzz target for FUZZTIME each (default 30s). Crashers land in the package's
# testdata/fuzz/ and then run as regression tests in `make test`.
#   FUZZTIME=10m make fuzz      longer runs
#   FUZZ=./xfs make fuzz        one package
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-30s}
pkgs=${FUZZ:-./...}
fail=0
for pkg in $(go list -f '{{.Dir}}' $pkgs); do
  rel=./${pkg#"$PWD"/}
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$pkg"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "== $rel $target ($t)"
    # Minimising multi-KiB inputs can stall a worker for minutes; bound it by count.
    if ! go test "$rel" -run '^$' -fuzz "^${target}\$" -fuzztime "$t" -fuzzminimizetime=200x; then
      fail=1
    fi
  done
done
exit $fail
