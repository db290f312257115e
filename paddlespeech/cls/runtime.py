"""Device and thread selection, and the error handling every script shares."""
import os
import sys
import traceback

from .errors import UserError


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

    ``--debug`` anywhere in ``argv`` shows the full traceback instead.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = '--debug' in argv
    if debug:
        argv.remove('--debug')
    try:
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
