"""``python -m paddlespeech.cls COMMAND``: :mod:`paddlespeech.cls.cli`."""
import sys

from paddlespeech.cls.cli import main

sys.exit(main())
