"""CenterNet ("Objects as Points") object-detection training framework."""

__version__ = "0.1.0"
