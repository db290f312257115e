"""Speed and memory of the recipe against the PyTorch reference; a package
so that its modules import each other (``benchmarks.common``) by name."""
