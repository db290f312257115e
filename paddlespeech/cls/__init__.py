"""Sound classification with PANNs.

Importing this package prepares the process, so scripts import it before
Paddle:
the MKL bundled with Paddle takes a slow non-AVX2 path on AMD CPUs unless
``MKL_DEBUG_CPU_TYPE=5`` is set (1.8-2.3x faster CNNs measured here), and
Paddle's import prints a ccache warning that only matters when building
C++ extensions.
"""
import os
import sys
import warnings

if 'paddle' not in sys.modules:
    os.environ.setdefault('MKL_DEBUG_CPU_TYPE', '5')
warnings.filterwarnings('ignore', message='No ccache found')
warnings.filterwarnings('ignore',
                        message='When training, we now always track global')
