"""tensorgate: ONNX LSTMs, GRUs and RNNs to tensor-compressed models and PE-array hardware."""
__version__ = "0.1.0"
