#!/usr/bin/env python3
"""Write a synthetic dataset in ESC-50 layout (or, with --layout folder or
manifest, the same clips in those layouts); see
``python -m paddlespeech.cls.datasets.synthetic --help``."""
import paddlespeech.cls  # noqa: F401
from paddlespeech.cls.datasets.synthetic import main
from paddlespeech.cls.runtime import run

if __name__ == '__main__':
    run(main)
