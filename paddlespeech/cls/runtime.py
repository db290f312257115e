"""Process preparation, device and thread selection, and the error
handling every script shares."""
import contextlib
import functools
import os
import signal
import sys
import threading
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import UserError
from .logs import get_logger

log = get_logger(__name__)


@dataclass
class RuntimeConfig:
    """The ``runtime:`` section: where and how a script computes."""
    device: Optional[str] = None  # None: gpu when available, else cpu
    cpu_threads: Optional[int] = None  # None: all cores
    feat_backend: str = 'numpy'  # numpy | paddle (features.FEAT_BACKENDS)


def prepare_process(paddle=True):
    """Settings for a process of the recipe; the first call of every entry
    point, before anything imports numpy or Paddle. ``paddle=False``: a
    process that never runs Paddle (the HTTP server; its predictors run in
    child processes, which call this themselves) instead gives the memory
    of large buffers back as soon as they are freed
    (:func:`return_large_buffers`): what it holds are request bodies and
    decoded audio, not activations worth keeping.

    The MKL bundled with Paddle takes a slow non-AVX2 path on AMD CPUs
    unless ``MKL_DEBUG_CPU_TYPE=5`` is set (1.8-2.9x faster CNNs measured
    on Zen 3 and Zen 5); on Intel the same setting holds MKL to AVX2
    (1.3-1.5x slower on an AVX-512 Xeon), so it is set on AMD CPUs only.
    Paddle's C++ INFO/WARNING log lines and its ccache warning (which only
    matters when building C++ extensions) are noise for users of the
    scripts. numpy's OpenBLAS threads keep spinning after the front end's
    small matrix products and take the cores from Paddle's: one OpenBLAS
    thread made predict.py 1.3x and deploy/predict.py 1.1x faster on CNN14
    here. Large activations come from the heap instead of fresh mmap pages
    (:func:`keep_large_buffers`). Each setting yields to a value already in
    the environment; a second call changes nothing.
    """
    if 'paddle' not in sys.modules:
        if amd_cpu():
            os.environ.setdefault('MKL_DEBUG_CPU_TYPE', '5')
        os.environ.setdefault('GLOG_minloglevel', '2')
    if 'numpy' not in sys.modules:
        os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
    if paddle and 'MALLOC_MMAP_MAX_' not in os.environ:
        keep_large_buffers()
    if not paddle and 'MALLOC_MMAP_THRESHOLD_' not in os.environ:
        return_large_buffers()
    warnings.filterwarnings('ignore', message='No ccache found')
    warnings.filterwarnings(
        'ignore', message='When training, we now always track global')


def select_device(device=None):
    """Validate and set ``cpu``, ``gpu`` or ``gpu:N``; None picks gpu if any."""
    import paddle
    has_gpu = (paddle.device.is_compiled_with_cuda()
               and paddle.device.cuda.device_count() > 0)
    if device is None:
        device = 'gpu' if has_gpu else 'cpu'
    kind, _, index = device.partition(':')
    if kind not in ('cpu', 'gpu') or (index and not index.isdigit()):
        raise UserError(f'unknown device {device!r}: use cpu, gpu or gpu:N')
    if kind == 'gpu' and not has_gpu:
        raise UserError(
            f'device {device!r} asked, but this Paddle '
            f'({paddle.__version__}) has no usable GPU: install '
            f'paddlepaddle-gpu on a machine with CUDA, or use --device cpu')
    if kind == 'gpu' and index and int(index) >= paddle.device.cuda.device_count():
        raise UserError(f'device {device!r} does not exist: '
                        f'{paddle.device.cuda.device_count()} GPU(s) visible')
    paddle.set_device(device)
    return device


def set_cpu_threads(threads=None, share_with=1):
    """Paddle's dynamic graph uses one thread unless told otherwise.

    The default splits the cores among ``share_with`` processes (data
    parallel training on CPU) instead of oversubscribing them.
    """
    import paddle
    threads = threads or max(1, len(os.sched_getaffinity(0)) // share_with)
    paddle.base.core.set_num_threads(int(threads))
    return threads


def run(main, argv=None):
    """Call ``main(argv)``; user errors become one stderr line and exit 2.

    ``--debug`` anywhere in ``argv`` shows the full traceback instead;
    ``--log_level LEVEL`` sets what the library logs (:mod:`.logs`).
    """
    from . import logs
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = '--debug' in argv
    if debug:
        argv.remove('--debug')
    argv, level = logs.pop_level(argv)
    try:
        if level is not None:
            logs.set_level(level)
        status = main(argv)
    except UserError as e:
        if debug:
            traceback.print_exc()
        print(f'error: {e}', file=sys.stderr)
        status = 2
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        status = 130
    sys.exit(status or 0)


def check_amp(amp, device):
    """Mixed precision runs on the GPU only: refuse it up front on CPU."""
    if amp not in (None, 'off') and not device.startswith('gpu'):
        raise UserError(f'--amp {amp} needs a GPU, but this run is on '
                        f'{device}; use --amp off (the default) on CPU')


def amd_cpu():
    """Whether the CPU is AMD's (Linux; False where it cannot be told)."""
    try:
        with open('/proc/cpuinfo') as f:
            return any(line.startswith('vendor_id') and 'AuthenticAMD' in line
                       for line in f)
    except OSError:
        return False


@functools.lru_cache(maxsize=None)
def _libc_function(name):
    """Looked up once: ``find_library`` runs ``ldconfig`` in a subprocess."""
    import ctypes
    import ctypes.util
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library('c')), name)
    except (OSError, AttributeError, TypeError):
        return None  # not glibc


def _malloc_trim():
    return _libc_function('malloc_trim')


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_large_buffers(trim_threshold_mb=512):
    """Serve every allocation from the heap, never from mmap.

    glibc maps blocks above 32 MB (a CNN14 batch of 8 has activations of
    65 MB) straight from the kernel and unmaps them on free, so every
    batch faults and zeroes the same memory again: 24 % of a CNN14
    inference batch and 21 % of a training step here. Kept in the heap
    they are reused; the freed memory stays resident up to
    ``trim_threshold_mb`` at the top of the heap, and prediction gives
    fragmented memory back with :class:`HeapLimit`. Returns whether
    glibc took the settings.
    """
    mallopt = _libc_function('mallopt')
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_MAX, 0) and mallopt(
        _M_TRIM_THRESHOLD, int(trim_threshold_mb) << 20))


_M_MMAP_THRESHOLD = -3


def return_large_buffers(threshold_mb=1):
    """Serve every allocation over ``threshold_mb`` from a mapping of its
    own, unmapped when freed. glibc's default raises its threshold to the
    largest block freed so far (up to 32 MB), after which request bodies
    and decoded audio land in the heaps of the threads that read them,
    which keep the memory: the HTTP server grew by 80-115 MB per burst of
    eight 13 MB uploads, 5-8 MB with this. Returns whether glibc took it.
    """
    mallopt = _libc_function('mallopt')
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(threshold_mb * 2**20)))


def rss_mb():
    """Resident set size of this process now (Linux; 0 elsewhere)."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


class HeapLimit:
    """Keep a long prediction run from growing without bound.

    Activations sized by the input length are freed into glibc's heap,
    which keeps them, fragmented, instead of returning them: a CNN6
    predictor fed files of 0.5-5 s grew by 267 MB over 600 files and was
    still growing. ``check()`` after each batch calls ``malloc_trim`` once
    the process has grown by ``slack_mb`` since the last trim. Trimming
    after every batch also bounds it, but then every batch faults its
    memory in again (+58 % CPU time); with 64 MB of slack it is about 5 %.
    A no-op where the C library is not glibc.
    """

    def __init__(self, slack_mb=64):
        self.slack_mb = slack_mb
        self.trim = _malloc_trim()
        self.base = None
        self.trims = 0

    def check(self):
        if self.trim is None:
            return
        rss = rss_mb()
        if self.base is None:
            self.base = rss
        elif rss > self.base + self.slack_mb:
            self.trim(0)
            self.trims += 1
            self.base = rss_mb()


_silenced = {}  # fd -> [threads inside, saved copy of the fd]
_silenced_lock = threading.Lock()


@contextlib.contextmanager
def stdout_silenced(fds=(1,)):
    """Paddle 3.3's oneDNN passes (and paddle2onnx) print debug lines
    (``ReduceMeanCheckIfOneDNNSupport``) straight to file descriptor 1,
    inside our output; its INT8 passes list what they fused on 2.
    Thread-safe: the first thread in redirects a descriptor, the last one
    out restores it (predictors run on several threads in a service)."""
    sys.stdout.flush()
    sys.stderr.flush()
    with _silenced_lock:
        for fd in fds:
            entry = _silenced.setdefault(fd, [0, None])
            if entry[0] == 0:
                null = os.open(os.devnull, os.O_WRONLY)
                entry[1] = os.dup(fd)
                os.dup2(null, fd)
                os.close(null)
            entry[0] += 1
    try:
        yield
    finally:
        with _silenced_lock:
            for fd in fds:
                entry = _silenced[fd]
                entry[0] -= 1
                if entry[0] == 0:
                    os.dup2(entry[1], fd)
                    os.close(entry[1])


@contextlib.contextmanager
def loggers_quieted(levels):
    """Python loggers of third-party libraries (``{name: level}``) held at
    a higher level for the duration: Paddle's quantiser narrates each stage
    and warns that its own way of loading a model is deprecated; ONNX
    Runtime's shape inference says it is running. None of it means
    anything to a user."""
    import logging
    saved = {}
    for name, level in levels.items():
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.setLevel(max(level, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def progress_on_terminal_only(*modules):
    """The ``tqdm`` bars of third-party ``modules`` (their module-level
    ``tqdm`` name) drawn only on a terminal, as ``disable=None`` does: in a
    redirected log every redraw is another line."""
    from tqdm import tqdm

    class TerminalTqdm(tqdm):
        def __init__(self, *args, **kw):
            kw.setdefault('disable', None)
            super().__init__(*args, **kw)

    saved = [(m, m.tqdm) for m in modules if hasattr(m, 'tqdm')]
    for module, _ in saved:
        module.tqdm = TerminalTqdm
    try:
        yield
    finally:
        for module, original in saved:
            module.tqdm = original


BF16_FLAGS = ('avx512_bf16', 'amx_bf16')


def cpu_flags():
    """The CPU's feature flags (``/proc/cpuinfo``; empty where unknown)."""
    try:
        text = Path('/proc/cpuinfo').read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith('flags'):
            return set(line.partition(':')[2].split())
    return set()


def check_bf16(what='--precision bf16'):
    """Refuse BF16 on a CPU without BF16 instructions (oneDNN would
    emulate them, slower than fp32)."""
    if not set(BF16_FLAGS) & cpu_flags():
        raise UserError(f'{what} needs a CPU with AVX-512 BF16 or AMX '
                        f'({" or ".join(BF16_FLAGS)} in /proc/cpuinfo); '
                        f'this one has neither: use fp32 or --quantize int8')


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) arrived; raised between two training steps."""


class StopRequest:
    """Turns the first SIGINT / SIGTERM into a request checked between
    steps (``requested``, or :meth:`check`), so what is written on the way
    out is consistent; a second one interrupts at once. ``doing``: what
    the run does before it stops, for the warning line."""

    def __init__(self, enabled=True, doing='saving a checkpoint after this '
                 'step (Ctrl-C again to quit without saving)'):
        self.enabled, self.requested, self._old = enabled, False, {}
        self.doing = doing

    def __enter__(self):
        if self.enabled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        self.requested = True
        log.warning(f'\n{signal.Signals(signum).name}: {self.doing}')

    def check(self):
        if self.requested:
            raise Interrupted()
