#!/usr/bin/env bash
# On the GPU machine, from the project root, after benchmarks/gpu_tune_pack.sh was carried as .device/t:
#   bash benchmarks/gpu_tune.sh DATASET SECONDS RECIPE... (RECIPE = name[:key=value,key=value])
# Trains every recipe x seeds 0,1,2 as parallel processes on the one GPU (bf16 autocast), each
# exporting and evaluating its model (int8, CPU runtime); whatever finished within SECONDS is merged
# into gpu_tune.{json,md}; everything (logs, per-run JSON) lands in $OUT/gpu_tune.tar.gz. Give the call's
# timeout ~30 s more than SECONDS; export and evaluation of one model take ~2 min on the machine's CPUs
# (a second try with 90 s of training and SECONDS=185 returned nothing: all three were still evaluating).
set -u
dataset=$1; budget=$2; shift 2
R=$(pwd); T=$R/.device/t; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$T"/wheels/*.whl || exit 1
rm -rf /tmp/rs && mkdir -p /tmp/rs/benchmarks /tmp/work /tmp/res /tmp/logs && cp -r rfm /tmp/rs/ && cp benchmarks/*.py /tmp/rs/benchmarks/
for d in train export runtime adapt; do cp -r $d /tmp/rs/rfm/$d; done
python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall('/tmp/work')" "$T/work.tar.xz" || exit 1
export PYTHONPATH=/tmp/rs:/tmp/site PYTHONUNBUFFERED=1 RFM_QUIET=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export ACCELERATE_MIXED_PRECISION=bf16 OMP_NUM_THREADS=2 RAYON_NUM_THREADS=2 TOKENIZERS_PARALLELISM=false
python3 - "$T/minilm" <<'PY' || exit 1
import lzma, shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
src, dst = Path(sys.argv[1]), Path("/tmp/minilm")
dst.mkdir(exist_ok=True)
for f in src.iterdir():
    if f.is_file() and f.suffix != ".xz":
        shutil.copy(f, dst / f.name)
with lzma.open(src / "model.fp16.safetensors.xz") as packed, open("/tmp/fp16.safetensors", "wb") as raw:
    shutil.copyfileobj(packed, raw)
save_file({k: v.float() for k, v in load_file("/tmp/fp16.safetensors").items()}, dst / "model.safetensors")
import torch, transformers, onnxruntime, optimum
print("torch", torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU", "transformers", transformers.__version__,
      "onnxruntime", onnxruntime.__version__, flush=True)
PY
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
for recipe in "$@"; do
  name=${recipe%%:*}; sets=(); [[ $recipe == *:* ]] && IFS=, read -ra kv <<< "${recipe#*:}" && for x in "${kv[@]}"; do sets+=(--set "$x"); done
  for seed in 0 1 2; do
    timeout "$budget" python3 /tmp/rs/benchmarks/gpu_tune.py --dataset "$dataset" --recipe "$name" --seed $seed \
      "${sets[@]}" --backbone /tmp/minilm --work /tmp/work --models /tmp/models --out /tmp/res --threads 2 \
      > /tmp/logs/$name-s$seed.log 2>&1 &
  done
done
start=$SECONDS
while [[ -n $(jobs -r) ]]; do sleep 5; echo "[$((SECONDS - start))s] running: $(jobs -r | wc -l); $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null)"; done
tail -n 3 /tmp/logs/*.log
ls /tmp/res/*.json >/dev/null 2>&1 && python3 /tmp/rs/benchmarks/gpu_tune.py --report /tmp/res --out /tmp/res
tar czf "$OUT/gpu_tune.tar.gz" -C /tmp res logs
cp /tmp/res/gpu_tune.md "$OUT/" 2>/dev/null; true
