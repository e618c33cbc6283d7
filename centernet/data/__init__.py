"""centernet.data."""
