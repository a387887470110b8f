"""The runnable application around the transforms: CLI, options and the embedded local backend."""
