"""The runnable application around the transforms: CLI, options and the embedded local backend."""

__version__ = "0.1.0"
