"""Running a trained model: over a loader (evaluation), over images (``Detector``), with test-time augmentation.

See ``docs/inference.md`` for the tools and ``docs/architecture.md`` for where this sits in the data flow.
"""
