"""The sections of the device check run by ``benchmarks/gpu.py``."""
