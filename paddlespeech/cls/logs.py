"""Console output of the library through Python ``logging``.

Each module logs to its own logger (:func:`get_logger` with
``__name__``), all under ``paddlespeech.cls``, whose one handler writes
the bare message: INFO and DEBUG lines to stdout, warnings and errors to
stderr, so the lines users and tests read stay as ``print`` wrote them.
In a data-parallel run only rank 0 speaks below ERROR (:class:`RankFilter`).
Scripts take ``--log_level`` (:func:`.runtime.run` hands it to
:func:`set_level`). As in Hugging Face ``transformers``, the library logger
does not propagate to the root logger: an application's own
``logging.basicConfig`` does not print every line twice.
"""
import logging
import os
import sys

ROOT = 'paddlespeech.cls'
LEVELS = ('debug', 'info', 'warning', 'error')


def rank():
    """This process's rank under ``paddle.distributed.launch`` (0 alone),
    read from the environment so that logging needs no Paddle."""
    return int(os.environ.get('PADDLE_TRAINER_ID') or 0)


class RankFilter(logging.Filter):
    """Records below ERROR from rank 0 only: every rank would print the
    same data summary and training lines."""

    def filter(self, record):
        return record.levelno >= logging.ERROR or rank() == 0


class ConsoleHandler(logging.Handler):
    """INFO and below to ``sys.stdout``, the rest to ``sys.stderr``, each
    looked up per record (pytest's capture and ``redirect_stdout`` replace
    them), written with ``tqdm.write`` so a progress bar is not torn."""

    def emit(self, record):
        try:
            from tqdm import tqdm
            stream = (sys.stdout if record.levelno < logging.WARNING else
                      sys.stderr)
            tqdm.write(self.format(record), file=stream)
            stream.flush()
        except Exception:
            self.handleError(record)


def _library_logger():
    logger = logging.getLogger(ROOT)
    if not any(isinstance(h, ConsoleHandler) for h in logger.handlers):
        handler = ConsoleHandler()
        handler.setFormatter(logging.Formatter('%(message)s'))
        handler.addFilter(RankFilter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def get_logger(name):
    """The logger of module ``name`` (``__name__``), the library's handler
    in place."""
    _library_logger()
    return logging.getLogger(name)


def set_level(level):
    """Show the library's messages from ``level`` (``debug``, ``info``,
    ``warning``, ``error``, any case) up."""
    name = str(level).lower()
    if name not in LEVELS:
        from .errors import UserError
        raise UserError(f'--log_level {level}: use one of '
                        f'{", ".join(LEVELS)}')
    _library_logger().setLevel(name.upper())


def pop_level(argv):
    """``(argv without --log_level X, X or None)``: like ``--debug``, a
    flag every script takes before its own parser runs."""
    argv, level = list(argv), None
    for i, arg in enumerate(argv):
        if arg == '--log_level' and i + 1 < len(argv):
            level = argv[i + 1]
            del argv[i:i + 2]
            break
        if arg.startswith('--log_level='):
            level = arg.split('=', 1)[1]
            del argv[i]
            break
    return argv, level
