#!/usr/bin/env bash
# Pack what benchmarks/gpu_tune.sh needs on a GPU machine that has PyTorch + CUDA but no package index
# and takes at most 64 MiB per call: the training-side wheels rfm pins (transformers 4.57, optimum-onnx),
# all-MiniLM-L6-v2 (stored as xz-compressed fp16 to fit; gpu_tune.sh restores fp32 before training) and the
# benchmark's prepared data (run benchmarks/personalization.py once first). Writes .device/t (ignored).
#   bash benchmarks/gpu_tune_pack.sh [DATASET]
set -euo pipefail
dataset=${1:-s2}
root=$(git rev-parse --show-toplevel); cd "$root"
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
rm -rf .device/t && mkdir -p .device/t/wheels .device/t/minilm
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .device/t/wheels transformers==4.57.6 tokenizers==0.22.2 huggingface_hub==0.36.2 optimum==2.1.0 optimum-onnx==0.1.0
.venv/bin/python - <<'PY'
import lzma
import shutil
from pathlib import Path
from safetensors.torch import load_file, save_file
from rfm.runtime.tokenize import minilm_dir
src, dst = minilm_dir(), Path(".device/t/minilm")
for f in src.iterdir():
    if f.is_file() and f.suffix != ".safetensors" and f.name not in ("README.md", "data_config.json"):
        shutil.copy(f, dst / f.name)
save_file({k: v.half().contiguous() for k, v in load_file(src / "model.safetensors").items()}, "/tmp/fp16.safetensors")
with open("/tmp/fp16.safetensors", "rb") as raw, lzma.open(dst / "model.fp16.safetensors.xz", "wb", preset=9) as packed:
    shutil.copyfileobj(raw, packed)
PY
w=benchmarks/work
tar cJf .device/t/work.tar.xz -C $w split_$dataset/train.jsonl split_$dataset/heldout.jsonl \
  split_$dataset/seen_test.jsonl split_$dataset/split.json $dataset.raters.json pool.jsonl
du -sb .device/t
