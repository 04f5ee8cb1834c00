"""rfm: personalised reward-feature models that train on many raters and run on one person's machine."""

import os as _os

# A person's data stays on their machine: onnxruntime (1.2x+ on Linux/macOS) otherwise creates
# ~/.cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,onnxruntime.db}, a device id and queued
# telemetry events, on its first import. The opt-out must be set before onnxruntime initialises;
# an explicit value in the environment wins. (ORT_TELEMETRY_DISABLED is the name newer releases read.)
for _name in ("ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED"):
    _os.environ.setdefault(_name, "1")

__version__ = "0.1.0"
