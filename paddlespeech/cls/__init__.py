"""Sound classification with PANNs.

Importing this package prepares the process, so scripts import it before
Paddle. The MKL bundled with Paddle takes a slow non-AVX2 path on AMD CPUs
unless ``MKL_DEBUG_CPU_TYPE=5`` is set (1.8-2.9x faster CNNs measured on
Zen 3 and Zen 5); on Intel the same setting holds MKL to AVX2 (1.3-1.5x
slower on an AVX-512 Xeon), so it is set on AMD CPUs only. Paddle's C++ INFO/WARNING log lines and its ccache warning (which
only matters when building C++ extensions) are noise for users of the
scripts. numpy's OpenBLAS threads keep spinning after the front end's small
matrix products and take the cores from Paddle's: one OpenBLAS thread made
predict.py 1.3x and deploy/predict.py 1.1x faster on CNN14 here. Large
activations come from the heap instead of fresh mmap pages, which glibc
returns to the system on every free, so each batch paid the page faults
again: 1.31x faster CNN14 inference and 1.34x training here
(:func:`runtime.keep_large_buffers`). Each setting yields to a value
already in the environment.
"""
import os
import sys
import warnings

from .runtime import amd_cpu, keep_large_buffers

if 'paddle' not in sys.modules:
    if amd_cpu():
        os.environ.setdefault('MKL_DEBUG_CPU_TYPE', '5')
    os.environ.setdefault('GLOG_minloglevel', '2')
if 'numpy' not in sys.modules:
    os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
if 'MALLOC_MMAP_MAX_' not in os.environ:
    keep_large_buffers()
warnings.filterwarnings('ignore', message='No ccache found')
warnings.filterwarnings('ignore',
                        message='When training, we now always track global')
