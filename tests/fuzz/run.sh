#!/bin/sh
# run.sh [SECONDS]: builds the parser fuzz targets and runs each for SECONDS
# (default 60) on 1 core, seeded from tests/fuzz/seeds/<format>/ and the golden
# meshes; new corpus entries go to build/fuzz/corpus/<format>/ (not committed).
set -eu
secs=${1:-60}
make -s fuzz
for f in obj ply stl off json; do
  mkdir -p build/fuzz/corpus/$f
  seeds=tests/fuzz/seeds/$f
  extra=""
  [ "$f" = obj ] && extra=tests/golden/meshes
  echo "== fuzz_$f for ${secs}s"
  build/fuzz/fuzz_$f -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 build/fuzz/corpus/$f $seeds $extra 2>&1 | grep -E "stat::number_of_executed_units|ERROR|runtime error|SUMMARY|Done" || true
done
