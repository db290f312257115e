"""Sound classification with PANNs.

Importing the package changes nothing in the process: entry points call
:func:`paddlespeech.cls.runtime.prepare_process` first (MKL on AMD CPUs,
one OpenBLAS thread, large buffers from the heap). ``open_model`` is
imported on first use, so ``import paddlespeech.cls`` stays light.
"""

__all__ = ['open_model']


def __getattr__(name):
    if name == 'open_model':
        from .opener import open_model
        return open_model
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
