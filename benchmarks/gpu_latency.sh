#!/usr/bin/env bash
# On the GPU machine, from the project root, after each part but the last of benchmarks/gpu_latency_pack.sh
# was sent in its own call (carry .device/gI; command: mkdir -p /tmp/p && cp .device/gI/part.* /tmp/p/),
# in the call that carries the last part:  bash benchmarks/gpu_latency.sh [COMMAND...]
# Unpacks onnxruntime-gpu + the artifact (+ extra/wheels/*.whl, installed ahead of the machine's own),
# points LD_LIBRARY_PATH at the CUDA libraries of the machine's own PyTorch and runs COMMAND (default:
# benchmarks/gpu_latency.py, whose gpu_latency.{json,md,log} land in $OUT).
set -u
R=$(pwd); OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/p
last=$(ls -d .device/g[0-9]* | sort -V | tail -n1); cp "$last"/part.* /tmp/p/
if command -v zstd >/dev/null; then Z=zstd; else export LD_LIBRARY_PATH=$R/$last/zbin; Z=$R/$last/zbin/zstd; fi
(cd /tmp && cat $(ls p/part.* | sort -V) | $Z -d -q --long=30 | tar xf -) || { echo "unpack failed"; exit 1; }
unset LD_LIBRARY_PATH
rm -rf /tmp/rs && mkdir -p /tmp/rs/benchmarks && cp -r rfm /tmp/rs/ && cp benchmarks/gpu_latency.py /tmp/rs/benchmarks/
for d in train export runtime adapt; do cp -r $d /tmp/rs/rfm/$d; done
NV=$(python3 -c "import glob, os, sys; print(':'.join(sorted({os.path.dirname(p) for p in glob.glob(os.path.join(sys.prefix, 'lib/python3*/site-packages/nvidia/**/*.so*'), recursive=True)})))")
if ls /tmp/g/extra/wheels/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --no-cache-dir --target /tmp/g/wheels /tmp/g/extra/wheels/*.whl || exit 1
fi
export LD_LIBRARY_PATH=$NV PYTHONPATH=/tmp/g/site:/tmp/g/wheels:/tmp/rs PYTHONUNBUFFERED=1 RFM_QUIET=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import onnxruntime as o, tokenizers, numpy; print('onnxruntime', o.__version__, o.get_available_providers(), 'tokenizers', tokenizers.__version__, 'numpy', numpy.__version__)"
if [[ $# -gt 0 ]]; then cd /tmp && "$@"; exit; fi  # from /tmp: the checkout's rfm/ lacks rfm.train etc.
timeout 400 python3 /tmp/rs/benchmarks/gpu_latency.py --artifact /tmp/g/art --ref /tmp/g/art/gpuref.npz --out "$OUT" 2>&1 | tee "$OUT/gpu_latency.log"
