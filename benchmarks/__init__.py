"""Speed and memory benchmarks of the framework against reference implementations (see run.py)."""
