#!/usr/bin/env bash
# The GPU run: the speed benchmark, then on-device training for a budget.
#
#   experiments/gpu.sh fetch                 # here, with a package registry
#   experiments/gpu.sh run OUT [SECONDS]     # on the GPU machine
#
# With this workplace's device tool: `fetch` here, then one call with
# carry=['.whl'] and command `experiments/gpu.sh run $OUT`.
#
# `fetch` downloads into .whl/ the wheels the training path needs beyond
# what a bare JAX GPU image has (ml_collections, tensorboardX, dm-pix; the
# path needs no TFDS, grain or detector). `run` installs them, writes
# OUT/bench.json (inference of the paper's AlexNet and the light network,
# training steps with batches drawn on the device), trains
# `--config=on_device` for SECONDS (default 240, so that the whole run fits
# one 600 s device call; stopped by SIGINT, which saves a checkpoint), then OUT/metrics.jsonl, OUT/light.npz (the weights,
# float16) and OUT/log.txt. The project's own code runs from the checkout.
# MOFA_BENCH_ARGS and MOFA_TRAIN_ARGS replace the benchmark's and the
# training's sizes (a CPU rehearsal: JAX_PLATFORMS=cpu and small ones).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(ml_collections==1.1.0 tensorboardX==2.6.5 dm-pix==0.4.5)

case "${1:-}" in
  fetch)
    python3 -m pip download --no-deps --only-binary=:all: \
      --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
    ;;
  run)
    out=${2:?usage: experiments/gpu.sh run OUT [SECONDS]}
    seconds=${3:-240}
    mkdir -p "$out"
    exec > >(tee "$out/log.txt") 2>&1
    if compgen -G ".whl/*.whl" > /dev/null; then
      python3 -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target /tmp/mofa_site .whl/*.whl
      export PYTHONPATH=/tmp/mofa_site:${PYTHONPATH:-}
    fi
    export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
    export TQDM_MININTERVAL=30  # a progress line every 30 s in the log
    python3 -c 'import jax; print("devices:", jax.devices())'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
      || true
    bench_args=${MOFA_BENCH_ARGS:---models=paper,on_device:light,on_device:alexnet --batch_sizes=1,64 --train_batch_sizes=256 --formation_batch_sizes=32}
    train_args=${MOFA_TRAIN_ARGS:---config.batch_size=256}
    # shellcheck disable=SC2086  # the arguments are words on purpose
    python3 -m experiments.bench --output="$out/bench.json" --overwrite \
      $bench_args
    workdir=/tmp/mofa_gpu_run
    status=0
    timeout -s INT -k 60 "$seconds" python3 -m mofa_ml.cli train \
      --config=on_device --workdir="$workdir" --config.log_every=20 \
      --config.checkpoint_every=1000 $train_args || status=$?
    # 124: stopped by the budget's SIGINT (after saving a checkpoint).
    if [ "$status" -ne 0 ] && [ "$status" -ne 124 ]; then
      echo "training failed ($status)"; exit "$status"
    fi
    cp "$workdir/metrics.jsonl" "$out/"
    python3 -m mofa_ml.learning.export_weights --workdir="$workdir" \
      --output="$out/light.npz" --overwrite
    ;;
  *)
    echo "usage: experiments/gpu.sh fetch | run OUT [SECONDS]" >&2
    exit 2
    ;;
esac
