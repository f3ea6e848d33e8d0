"""Latency on the target device: measurement (``measure``), per-unit lookup tables (``lut``) and
ONNX Runtime timing (``onnx``).
"""
