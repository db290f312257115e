"""Prediction output and what predict.py, tag.py and deploy/predict.py
share: inputs, windowed scoring of whole files, the printed blocks."""
import sys
from collections import deque
from pathlib import Path

import numpy as np

from .audio import AUDIO_SUFFIXES, AudioError, read_windows
from .errors import UserError
from .runtime import HeapLimit

WINDOW_HELP = ('files longer than this are read and classified in '
               'consecutive windows of this many seconds and the window '
               'scores are averaged (weighted by window length), so memory '
               'does not grow with the length of a file')


def expand_inputs(inputs):
    """Files as given, directories expanded to their audio files (sorted).

    Links found in a directory are kept even when dangling, so that they
    are reported rather than silently left out.
    """
    paths = []
    for item in inputs:
        p = Path(item)
        if p.is_dir() and p.suffix.lower() not in AUDIO_SUFFIXES:
            found = sorted(f for f in p.rglob('*')
                           if f.suffix.lower() in AUDIO_SUFFIXES
                           and (f.is_file() or f.is_symlink()))
            if not found:
                raise UserError(f'{p}: directory holds no audio files '
                                f'({", ".join(sorted(AUDIO_SUFFIXES))})')
            paths.extend(found)
        else:
            paths.append(p)
    return paths


def add_prediction_args(parser):
    """Flags every prediction script shares (inputs, device, output, and the
    front-end settings that may only confirm the model's own)."""
    parser.add('--wav', nargs='+', required=True,
               help='audio file(s) or directories to classify')
    parser.add('--device', help='cpu, gpu or gpu:N (default: gpu if '
               'available)')
    parser.add('--cpu_threads', type=int,
               help='CPU threads (default: all cores)')
    parser.add('--top_k', type=int, help='number of labels printed per file')
    parser.add('--window_seconds', type=float, help=WINDOW_HELP)
    parser.add('--sample_rate', key='expected_sample_rate', type=int,
               help='only checked: must equal the sample rate stored with '
               'the model')
    parser.add('--n_mels', key='expected_n_mels', type=int,
               help='only checked: must equal the number of mel bins '
               'stored with the model')


def check_prediction_args(cfg):
    if cfg.top_k < 1:
        raise UserError(f'--top_k must be at least 1, got {cfg.top_k}')
    if not cfg.window_seconds > 0:
        raise UserError(f'--window_seconds must be positive, got '
                        f'{cfg.window_seconds}')


class _File:
    """Running weighted sum of one file's window scores."""

    def __init__(self, path):
        self.path, self.total, self.weight = path, 0.0, 0
        self.error, self.unscored, self.read = None, 0, False


def predict_files(paths, feature, score, window_seconds, batch_size=1):
    """Yield ``(path, scores or None, error or None)`` in input order.

    ``score(waves)`` maps equal-length waveforms to ``[batch, classes]``.
    Windows of equal length (from one file or several) are batched, so a
    file's result does not depend on its neighbours; at most
    ``8 * batch_size`` windows are held in memory at once, and freed heap
    memory goes back to the system (:class:`HeapLimit`), so neither long
    files nor many files of different lengths grow the process.
    """
    files, groups = deque(), {}
    budget = max(8 * batch_size, 1)
    heap = HeapLimit()

    def run(length):
        batch = groups.pop(length)
        for (f, wav), s in zip(batch, score([wav for _, wav in batch])):
            f.unscored -= 1
            if f.error is None and not np.isfinite(s).all():
                f.error = f'{f.path}: the model gave non-finite scores'
            f.total, f.weight = f.total + len(wav) * s, f.weight + len(wav)
        heap.check()

    def finished():
        while files and files[0].read and files[0].unscored == 0:
            f = files.popleft()
            yield (f.path, None, f.error) if f.error else (
                f.path, f.total / f.weight, None)

    for path in paths:
        f = _File(path)
        files.append(f)
        try:
            for wav in read_windows(path, feature.sample_rate, window_seconds,
                                    feature.n_fft):
                groups.setdefault(len(wav), []).append((f, wav))
                f.unscored += 1
                if len(groups[len(wav)]) >= batch_size:
                    run(len(wav))
                if sum(map(len, groups.values())) >= budget:
                    for length in list(groups):
                        run(length)
        except AudioError as e:
            f.error = str(e)
        f.read = True
        yield from finished()
    for length in list(groups):
        run(length)
    yield from finished()


def print_predictions(results, labels, top_k):
    """Blocks on stdout, one line per failed file on stderr; exit status."""
    failed = 0
    for path, scores, error in results:
        if error:
            print(f'error: {error}', file=sys.stderr, flush=True)
            failed += 1
        else:
            print(format_block(path, scores, labels, top_k), flush=True)
    return 1 if failed else 0


def format_block(path, scores, labels, top_k):
    """The seed's output: ``[path]`` then ``Label: score`` lines, best first."""
    order = np.argsort(-scores, kind='stable')[:top_k]
    lines = [f'[{path}]'] + [f'{labels[i]}: {float(scores[i])}' for i in order]
    return '\n'.join(lines)


def check_contract(feature, cfg, source):
    """Refuse front-end settings that contradict the model's own."""
    bad = feature.mismatches(sample_rate=cfg.expected_sample_rate,
                             n_mels=cfg.expected_n_mels)
    if bad:
        raise UserError(f'{source} was trained with other features: '
                        f'{", ".join(bad)}; the stored settings are used '
                        f'automatically, drop these flags')
