#!/bin/sh
# demo.sh: the newcomer path behind `make demo`: install what is missing, build,
# make the furniture dataset, train a short run, sample from it, and draw the
# samples and the training curves as PNGs.
#
#   With a GPU: the small model (d=256) for DEMO_SECONDS (default 300), at most
#   DEMO_STEPS steps (default 3000), meshes up to 800 faces.
#   Without:    the tiny model (d=64) on the CPU for DEMO_SECONDS (default 300),
#               at most DEMO_STEPS steps (default 60), meshes up to 100 faces
#               (CPU attention over 7000-token sequences would take minutes per step).
# The run stops at whichever comes first (./train --time-limit checkpoints on the
# way out). Everything goes to runs/$DEMO_RUN (default runs/demo), replaced on
# each call.
set -eu
cd "$(dirname "$0")/.."
run=${DEMO_RUN:-demo}
dir=runs/$run
say() { printf '\n== %s\n' "$*"; }

# --- 1. packages -------------------------------------------------------------
packages="build-essential doctest-dev $(grep -v '^#' .ci/packages.txt | tr '\n' ' ')"
if command -v dpkg-query >/dev/null 2>&1; then
  missing=""
  for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing:$missing"
      apt-get update -qq
      # shellcheck disable=SC2086  # one word per package
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    else
      echo "demo: these Debian packages are missing:$missing"
      echo "      install them with:  sudo apt-get install$missing"
      exit 1
    fi
  fi
else
  echo "demo: not a Debian system; make sure these (or your system's equivalents) are installed:"
  echo "      $packages"
fi

# --- 2. build and data ---------------------------------------------------------
jobs=$(nproc 2>/dev/null || echo 2)
say "building (make -j$jobs)"
make -j"$jobs"
say "dataset (make data: data/furniture.npy from Debian's Sweet Home 3D furniture)"
make -j"$jobs" data

# --- 3. train ------------------------------------------------------------------
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && [ -n "$(ls build/*/*.cu.o 2>/dev/null)" ]; then
  device=cuda
  set -- --model small --batch 8 --max-faces 800 --val-interval 200 --val-batches 5 --log-interval 10
  steps=${DEMO_STEPS:-3000} samples=16 sample_faces=800
else
  device=cpu
  # --force: this is the configuration ./train itself suggests for a CPU; no need to
  # time it first (the estimate errs on the slow side and could stop it on a busy machine).
  set -- --model tiny --batch 4 --max-faces 100 --val-interval 10 --val-batches 2 --log-interval 2 --loader-threads 1 --force
  steps=${DEMO_STEPS:-60} samples=8 sample_faces=100
fi
seconds=${DEMO_SECONDS:-300}
rm -rf "$dir"
say "training on $device: at most $steps steps or $seconds s -> $dir"
./train data/furniture.npy "$@" --device "$device" --steps "$steps" --time-limit "$seconds" \
  --render-samples 4 --out runs --name "$run"
ckpt=$dir/final.ckpt
[ -f "$ckpt" ] || ckpt=$dir/last.ckpt  # stopped by the time limit

# --- 4. sample and draw ----------------------------------------------------------
say "sampling $samples meshes from $ckpt"
./sample --ckpt "$ckpt" -n "$samples" --max-faces "$sample_faces" --device "$device" \
  --out "$dir/meshes" --png "$dir/samples.png"
say "curves"
./render --log "$dir" -o "$dir/curves.png"

say "done"
echo "  training curves:        $dir/curves.png"
echo "  samples (contact sheet): $dir/samples.png   (meshes: $dir/meshes/)"
echo "  samples during training: $dir/samples/step-*.png"
echo "  log and checkpoints:     $dir/log.jsonl, $ckpt"
echo "A few minutes of training make blobs, not furniture: the published model trains for days."
echo "Next: make test; ./train --help; ./sample --help; ./render --help"
