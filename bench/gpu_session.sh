#!/usr/bin/env bash
# One device call that does everything the GPU machine is needed for, inside a deadline:
#   1. the GPU check and the GPU tests (bench/gpu_run.sh: gpu.json, gpu.md, cuda-tests.txt, gpu-log.txt);
#   2. in the time left, toy-model candidates trained on CUDA (scripts/train_toy.py --device cuda: a new UNet on
#      the bundled VAE, each run sized to its share of the time), weights only: judge them here with
#      scripts/toy_model_card.py and ToyBench before any replaces the bundled file.
#   device run (carry [".gpu"], timeout_s 600): bash bench/gpu_session.sh 570
set -uo pipefail
deadline=$((SECONDS + ${1:-570}))
out=${OUT:-outputs/gpu}
mkdir -p "$out" /tmp/toy
timeout $((deadline - SECONDS - 240)) bash bench/gpu_run.sh 2>&1 | tee "$out/gpu-log.txt"
export COMFYUI_DIR=$PWD/.gpu/ComfyUI PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site
# name|train_toy.py flags: more steps and a larger batch than the CPU recipe; with and without skip dropout.
variants=("plain|" "skip|--skip-dropout 0.5")
for i in "${!variants[@]}"; do
  name=${variants[$i]%%|*} flags=${variants[$i]#*|}
  share=$(( (deadline - SECONDS) / (${#variants[@]} - i) ))
  [ "$share" -lt 60 ] && { echo "no time left for toy run $name"; break; }
  # Start-up and saving take about 30 s of each share (encoding the data set counts inside --seconds).
  # shellcheck disable=SC2086
  timeout "$share" python3 scripts/train_toy.py --device cuda --vae-from models/toy/dragkit_toy.safetensors \
    --unet-batch 128 --unet-steps 100000 --dataset 16000 --seconds $((share - 60)) \
    --out "/tmp/toy/$name.safetensors" $flags 2>&1 | tee -a "$out/toy-log.txt"
  cp "/tmp/toy/$name.safetensors" "$out/toy_$name.safetensors" || true
done
ls -la "$out"
