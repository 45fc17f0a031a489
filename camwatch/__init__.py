"""camwatch: watch camera snapshot folders, caption each image, alert on rules."""

__version__ = "0.1.0"
