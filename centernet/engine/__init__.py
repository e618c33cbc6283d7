"""centernet.engine."""
