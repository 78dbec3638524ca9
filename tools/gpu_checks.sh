#!/bin/sh
# gpu_checks.sh: what a session with a GPU runs to see the GPU paths hold and to
# measure them, in as few calls as possible. Full logs go to $OUT (default
# gpu-logs/), a short table of the key lines is printed last.
#
#   tools/gpu_checks.sh build          make -j all for sm_90 (nproc jobs)
#   tools/gpu_checks.sh pack           (on the machine without a GPU) build, then put stripped
#                                      binaries in .prebuilt/ (~15 MiB): carried to the GPU
#                                      machine, they save its build minutes
#   tools/gpu_checks.sh unpack         (on the GPU machine) put .prebuilt/'s binaries in place
#   tools/gpu_checks.sh tests [FILTER] the whole doctest suite (or doctest -tc FILTER),
#                                      golden files from $IFLAME_GOLDEN (default tests/golden)
#   tools/gpu_checks.sh sanitize [FILTER]  compute-sanitizer memcheck (then racecheck and synccheck)
#                                      on the test cases FILTER names (default: the decoding kernels)
#   tools/gpu_checks.sh bench-sample   ./sample --bench: shapenet, batch 1, 16, 64, f32 and bf16
#   tools/gpu_checks.sh bench-train    ./train --bench-kernels, --bench at batch 16 and 48, --profile
#   tools/gpu_checks.sh all            build, tests, bench-sample, bench-train, in that order
#
# Several stages may be named in one call (tools/gpu_checks.sh unpack tests
# bench-sample): they share one summary. A filter for `tests` or `sanitize`
# is the word after it when that word is not a stage name. Each command is cut
# off after $STAGE_TIMEOUT seconds (default 480) so that one stuck run still
# leaves the summary of the others.
#
# Every command it runs is printed before its output in the log, so each figure
# recorded in docs/perf.md can name the command that produced it.
set -u
cd "$(dirname "$0")/.."
out=${OUT:-gpu-logs}
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"

note() { printf '%s\n' "$*" | tee -a "$summary"; }

# run LOG CMD...: runs CMD with its output appended to $out/LOG, after a line naming it.
run() {
  log="$out/$1"
  shift
  printf '\n$ %s\n' "$*" >>"$log"
  timeout "${STAGE_TIMEOUT:-480}" "$@" >>"$log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || note "FAILED (exit $rc): $* (see $log)"
  return $rc
}

stage_build() {
  note "== build"
  : >"$out/build.log"
  run build.log make -j"$(nproc)" all || exit 1
  note "built: $(ls -1 train sample evaluate render build/iflame_tests 2>/dev/null | tr '\n' ' ')"
}

stage_pack() {
  note "== pack"
  run build.log make -j"$(nproc)" all || exit 1
  mkdir -p .prebuilt
  for b in train sample evaluate render build/iflame_tests; do strip -o ".prebuilt/$(basename "$b")" "$b" || exit 1; done
  git rev-parse HEAD >.prebuilt/COMMIT 2>/dev/null
  note "packed: $(du -sh .prebuilt | cut -f1) in .prebuilt/ (commit $(cat .prebuilt/COMMIT 2>/dev/null))"
}

stage_unpack() {
  note "== unpack (binaries of commit $(cat .prebuilt/COMMIT 2>/dev/null))"
  mkdir -p build
  cp .prebuilt/train .prebuilt/sample .prebuilt/evaluate .prebuilt/render . || exit 1
  cp .prebuilt/iflame_tests build/ || exit 1
}

stage_tests() {
  note "== tests${1:+ ($1)}"
  : >"$out/tests.log"
  if [ -n "${1:-}" ]; then
    run tests.log ./build/iflame_tests -tc="$1"
  else
    run tests.log ./build/iflame_tests
  fi
  grep -E "^\[doctest\] test cases|FAILED|ERROR" "$out/tests.log" | tail -20 | tee -a "$summary"
  grep "MESSAGE: " "$out/tests.log" | grep -v "skipped" | sed 's/^.*MESSAGE: /  /' | head -80 | tee -a "$summary"
}

stage_sanitize() {
  filter=${1:-"sample: the small-batch*,sample: the position-free*,sample: the cached attention step split*"}
  note "== compute-sanitizer ($filter)"
  : >"$out/sanitize.log"
  for tool in memcheck racecheck synccheck; do
    run sanitize.log compute-sanitizer --tool "$tool" --error-exitcode 9 ./build/iflame_tests -tc="$filter"
  done
  grep -E "ERROR SUMMARY|test cases" "$out/sanitize.log" | tee -a "$summary"
}

stage_bench_sample() {
  note "== sampling benchmarks (shapenet, random weights, 900 positions)"
  : >"$out/bench-sample.log"
  for precision in f32 bf16; do
    for batch in 1 16 64; do
      run bench-sample.log ./sample --bench --model shapenet --batch "$batch" --tokens 900 --precision "$precision"
    done
  done
  run bench-sample.log ./sample --bench --model shapenet --batch 1 --tokens 7209 --precision bf16
  run bench-sample.log ./sample --bench --model shapenet --batch 1 --tokens 900 --precision bf16 --profile
  run bench-sample.log ./sample --bench --model shapenet --batch 64 --tokens 900 --precision bf16 --profile
  grep -E "^\\$|^bench:|tokens/s|cache:" "$out/bench-sample.log" | tee -a "$summary"
}

stage_bench_train() {
  note "== training benchmarks (shapenet, T = 6921, Muon)"
  : >"$out/bench-train.log"
  run bench-train.log ./train --bench-kernels --bench-length 6921 --bench-steps 5
  run bench-train.log env IFLAME_FLASH_ATTENTION=0 IFLAME_LINEAR_ATTENTION_MMA=0 ./train --bench-kernels --bench-length 6921 --bench-steps 3
  run bench-train.log ./train --bench --model shapenet --batch 16
  run bench-train.log ./train --bench --model shapenet --batch 16 --precision bf16-matmul
  run bench-train.log ./train --bench --model shapenet --batch 16 --recompute none
  run bench-train.log ./train --bench --model shapenet --batch 16 --recompute blocks
  run bench-train.log ./train --bench --model shapenet --batch 16 --recompute ffn:1
  run bench-train.log ./train --bench --model shapenet --batch 16 --recompute ffn:2
  run bench-train.log env IFLAME_LT_BIAS=0 ./train --bench --model shapenet --batch 16 --recompute ffn:2
  run bench-train.log ./train --bench --model shapenet --batch 16 --muon-ns bf16
  run bench-train.log ./train --bench --model shapenet --batch 48
  run bench-train.log ./train --bench --model shapenet --batch 16 --profile --bench-steps 2
  grep -E "^\\$|^model|^batch|^step|^throughput|^model work|^peak|^attention|forward|backward|^fwd\+bwd|TFLOP" "$out/bench-train.log" |
    head -80 | tee -a "$summary"
}

is_stage() {
  case "$1" in build | pack | unpack | tests | sanitize | bench-sample | bench-train | all) return 0 ;; *) return 1 ;; esac
}
[ $# -gt 0 ] || set -- all
while [ $# -gt 0 ]; do
  stage=$1
  shift
  arg=
  if [ $# -gt 0 ] && ! is_stage "$1"; then arg=$1; shift; fi
  case "$stage" in
    build) stage_build ;;
    pack) stage_pack ;;
    unpack) stage_unpack ;;
    tests) stage_tests "$arg" ;;
    sanitize) stage_sanitize "$arg" ;;
    bench-sample) stage_bench_sample ;;
    bench-train) stage_bench_train ;;
    all)
      stage_build
      stage_tests
      stage_bench_sample
      stage_bench_train
      ;;
    *)
      echo "usage: tools/gpu_checks.sh [build|pack|unpack|tests [FILTER]|sanitize [FILTER]|bench-sample|bench-train|all]..." >&2
      exit 2
      ;;
  esac
done
note "logs: $out/"
