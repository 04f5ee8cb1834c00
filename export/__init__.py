"""`rfm export`: the feature graph to ONNX through Hugging Face Optimum, quantised, self-checking."""
