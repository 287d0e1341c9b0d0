"""Backends: turn IR into artifact directories (numpy, verilog, onnx)."""
