"""Sound classification with PANNs.

Importing the package changes nothing in the process: entry points call
:func:`paddlespeech.cls.runtime.prepare_process` first (MKL on AMD CPUs,
one OpenBLAS thread, large buffers from the heap).
"""
