"""Helpers shared by the benchmark driver and its worker processes.

No Paddle or torch import here: each worker imports only the framework it
measures, so the two never share a process (their OpenMP runtimes and
thread pools would compete) and peak RSS stays per framework.
"""
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 32000
THREADS = 2


def timeit(fn, warmup, reps):
    """Median wall time (s) of ``fn()`` over ``reps`` runs after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def waves(batch, seconds, seed=0):
    """``batch`` float32 clips at 32 kHz: noise plus a tone, within +-1."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    out = 0.1 * rng.standard_normal((batch, n))
    out += 0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000, (batch, 1)) * t)
    return out.astype(np.float32)


def peak_rss_mb():
    """Peak resident set size of this process (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def proc_status_mb(pid='self', field='VmRSS'):
    """A memory field of ``/proc/PID/status`` in MB (``VmRSS``: now,
    ``VmHWM``: the peak), or None when the process is gone (a zombie has
    none)."""
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def current_rss_mb():
    rss = proc_status_mb()
    return float('nan') if rss is None else rss


def _cpuinfo(key):
    """The first ``key`` line's value in /proc/cpuinfo ('' if none)."""
    try:
        lines = Path('/proc/cpuinfo').read_text().splitlines()
    except OSError:
        return ''
    return next((line.split(':', 1)[1].strip() for line in lines
                 if line.startswith(key)), '')


# paddlespeech.cls sets MKL_DEBUG_CPU_TYPE=5 in the workers on AMD only
AMD = _cpuinfo('vendor_id') == 'AuthenticAMD'


def machine():
    flags = f" {_cpuinfo('flags')} "
    isa = [f for f in ('avx2', 'fma', 'avx512f') if f' {f} ' in flags]
    return {'cpu': _cpuinfo('model name') or 'unknown', 'isa': isa,
            'cpu_flags': sorted(f for f in flags.split()
                                if f.startswith(('avx', 'amx', 'fma'))),
            'cores': os.cpu_count(),
            'affinity': len(os.sched_getaffinity(0)),
            'python': platform.python_version(),
            'load_avg_1min': os.getloadavg()[0],
            'MKL_DEBUG_CPU_TYPE': os.environ.get(
                'MKL_DEBUG_CPU_TYPE', '5' if AMD else 'unset')}


def conv_flops(cin, cout, k, h, w):
    return 2 * cin * cout * k * k * h * w


def model_flops(arch, frames=501, mel_bins=64, num_class=50):
    """Multiply-adds x 2 of the conv and linear layers for one clip.

    ``frames`` = 1 + samples // 320 (501 for 5 s at 32 kHz). BatchNorm,
    ReLU, pooling and the softmax are left out (well under 1 %).
    Counts the fine-tuning classifier: backbone up to ``fc1`` plus the
    ``num_class`` head (the reference model's ``fc_audioset`` head differs
    by < 0.01 GFLOP).
    """
    h, w = frames, mel_bins
    total = 0
    if arch == 'cnn14':
        channels, k, convs = (64, 128, 256, 512, 1024, 2048), 3, 2
        pools = [2, 2, 2, 2, 2, 1]
    elif arch == 'cnn10':
        channels, k, convs = (64, 128, 256, 512), 3, 2
        pools = [2, 2, 2, 2]
    elif arch == 'cnn6':
        channels, k, convs = (64, 128, 256, 512), 5, 1
        pools = [2, 2, 2, 2]
    else:
        raise ValueError(arch)
    cin = 1
    for c, p in zip(channels, pools):
        for j in range(convs):
            total += conv_flops(cin if j == 0 else c, c, k, h, w)
        cin = c
        h, w = h // p, w // p
    emb = channels[-1]
    total += 2 * emb * emb + 2 * emb * num_class
    return total


def busy_cpu_seconds():
    """CPU seconds all processes spent since boot (/proc/stat), and ours
    (this process plus its waited-for children)."""
    fields = Path('/proc/stat').read_text().splitlines()[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = map(
        int, fields[:8])
    total = (user + nice + system + irq + softirq) / os.sysconf('SC_CLK_TCK')
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        own += r.ru_utime + r.ru_stime
    return total, own
