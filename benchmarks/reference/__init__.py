"""Straightforward re-implementations of the original CenterNet approach, the baselines of the benchmarks."""
