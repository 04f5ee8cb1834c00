#!/usr/bin/env bash
# Pack what benchmarks/gpu_latency.sh needs on a GPU machine that has PyTorch + CUDA but no package index
# and takes at most 64 MiB per call: onnxruntime-gpu 1.31.1 (a CUDA 13 build) and the artifact without its
# CPU graphs (fp16 graph, manifest, tokenizer, gpuref.npz), zstd-compressed, in parts of PART_BYTES:
# .device/g0 .. .device/gN (ignored); the last also holds a zstd binary.
#   bash benchmarks/gpu_latency_pack.sh ARTIFACT [PART_BYTES] [EXTRA_DIR]
# ARTIFACT: exported with --precision fp32,int8,fp16, with ARTIFACT/gpuref.npz from
# `python benchmarks/gpu_latency.py --make-ref ARTIFACT`. EXTRA_DIR's contents travel too, as /tmp/g/extra
# there (e.g. wheels/ that gpu_latency.sh installs, a run dir for `rfm bench --compare torch`).
set -euo pipefail
art=$1; part=${2:-62000000}; extra=${3:-}
root=$(git rev-parse --show-toplevel); cd "$root"
[[ -f $art/model_fp16.onnx && -f $art/gpuref.npz ]] || { echo "$art: needs model_fp16.onnx and gpuref.npz" >&2; exit 2; }
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
work=$(mktemp -d); mkdir -p "$work/g/site" "$work/g/art"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d "$work" "onnxruntime-gpu==1.31.1"
(cd "$work/g/site" && unzip -q "$work"/onnxruntime_gpu-*.whl && rm -f onnxruntime/capi/libonnxruntime_providers_tensorrt.so)
for f in "$art"/*; do [[ $f == *model.onnx || $f == *model_int8.onnx ]] || cp "$f" "$work/g/art/"; done
[[ -n $extra ]] && cp -r "$extra" "$work/g/extra"
tar cf - -C "$work" g | zstd -q -12 --long=30 -T0 -o "$work/g.tar.zst"
rm -rf .device/g[0-9]* && mkdir -p .device && split -b "$part" -d -a 1 "$work/g.tar.zst" .device/part.
for f in .device/part.*; do mkdir -p ".device/g${f##*.}" && mv "$f" ".device/g${f##*.}/"; done
last=$(ls -d .device/g[0-9]* | sort -V | tail -n1)
mkdir -p "$last/zbin" && cp "$(command -v zstd)" "$last/zbin/"
for l in liblz4.so.1 liblzma.so.5 libzstd.so.1; do
  p=$(ldconfig -p | awk -v l=$l '$1==l {print $NF; exit}'); [[ -n $p ]] && cp -L "$p" "$last/zbin/"; done
du -sb .device/g[0-9]*; rm -rf "$work"
