"""centernet.utils."""
