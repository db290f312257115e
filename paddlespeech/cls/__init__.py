"""Sound classification with PANNs.

Importing this package prepares the process, so scripts import it before
Paddle. The MKL bundled with Paddle takes a slow non-AVX2 path on AMD CPUs
unless ``MKL_DEBUG_CPU_TYPE=5`` is set (1.8-2.3x faster CNNs measured
here); Paddle's C++ INFO/WARNING log lines and its ccache warning (which
only matters when building C++ extensions) are noise for users of the
scripts. Each setting yields to a value already in the environment.
"""
import os
import sys
import warnings

if 'paddle' not in sys.modules:
    os.environ.setdefault('MKL_DEBUG_CPU_TYPE', '5')
    os.environ.setdefault('GLOG_minloglevel', '2')
warnings.filterwarnings('ignore', message='No ccache found')
warnings.filterwarnings('ignore',
                        message='When training, we now always track global')
