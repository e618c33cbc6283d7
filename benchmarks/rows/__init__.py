"""Benchmark rows: each module exposes ``run(ctx) -> list[Row]`` (registered in :data:`benchmarks.run.ROWS`)."""
