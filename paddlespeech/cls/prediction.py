"""What predict.py, tag.py and deploy/predict.py share: their settings,
inputs, windowed scoring of whole files, the printed blocks, and
:func:`main` (each script only says how its flags open the model; the
flags they share are :func:`..config.prediction_parser`)."""
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .audio import (AUDIO_SUFFIXES, AudioError, describe_left_out,
                    find_audio)
from .errors import UserError
from .logs import get_logger
from .runtime import HeapLimit
from .scoring import top_k

log = get_logger(__name__)


@dataclass
class PredictConfig:
    """The ``predict:`` section (``predict.py``, ``tag.py``,
    ``deploy/predict.py``, ``detect.py``, ``export_model.py
    --checkpoint``). ``backbone``, ``sample_rate`` and ``n_mels`` are only
    checked against the model's; ``arch`` is the AudioSet model ``tag.py``
    (and ``detect.py --pretrained``) tag with. Flat files call them
    ``expected_backbone``, ``expected_sample_rate``, ``expected_n_mels``
    and ``tag_arch``, and ``batch_size`` ``infer_batch_size``."""
    FLAT = {'backbone': 'expected_backbone',
            'sample_rate': 'expected_sample_rate',
            'n_mels': 'expected_n_mels', 'arch': 'tag_arch',
            'batch_size': 'infer_batch_size'}
    wav: Optional[Union[str, list]] = None  # audio files or directories
    checkpoint: Optional[str] = None  # a train.py checkpoint
    label_file: Optional[str] = None  # class names of a model without them
    backbone: Optional[str] = None
    sample_rate: Optional[int] = None
    n_mels: Optional[int] = None
    top_k: int = 1
    window_seconds: Optional[float] = None  # None: the model's clip length
    batch_size: int = 16  # windows per model run
    arch: str = 'cnn14'


def expand_inputs(inputs):
    """Files as given, directories expanded to their audio files (sorted,
    :func:`..audio.find_audio`); what a directory holds besides (hidden,
    not audio by name) is named in one warning line on stderr.

    Links found in a directory are kept even when dangling, so that they
    are reported rather than silently left out.
    """
    paths = []
    for item in inputs:
        p = Path(item)
        if p.is_dir() and p.suffix.lower() not in AUDIO_SUFFIXES:
            found, left_out = find_audio(p)
            if left_out:
                log.warning(f'warning: {p}: {describe_left_out(left_out)}')
            if not found:
                raise UserError(f'{p}: directory holds no audio files '
                                f'({", ".join(sorted(AUDIO_SUFFIXES))})')
            paths.extend(p / f for f in found)
        else:
            paths.append(p)
    return paths


def main(argv, get_parser, open_for):
    """The prediction scripts' ``main``: parse the flags, open the model
    (``open_for(cfg)`` -> :class:`..scoring.SoundModel`), print a block
    per input; exit status 0 only if every file was scored."""
    cfg = get_parser().parse_config(argv)
    check_prediction_args(cfg.predict)
    model = open_for(cfg)
    check_contract(model.feature, cfg.predict, model.source)
    results = predict_files(expand_inputs(cfg.wav), model.feature,
                            model.scores, model.windowing(cfg.window_seconds),
                            cfg.infer_batch_size)
    return print_predictions(results, model.labels, cfg.top_k)


def check_prediction_args(predict):
    """Refuse settings of the ``predict:`` section no run could use."""
    if predict.top_k < 1:
        raise UserError(f'--top_k must be at least 1, got {predict.top_k}')
    if predict.batch_size < 1:
        raise UserError(f'--batch_size must be at least 1, got '
                        f'{predict.batch_size}')
    if predict.window_seconds is not None and not predict.window_seconds > 0:
        raise UserError(f'--window_seconds must be positive, got '
                        f'{predict.window_seconds}')


class _File:
    """Running weighted sum of one file's window scores."""

    def __init__(self, path):
        self.path, self.total, self.weight = path, 0.0, 0
        self.error, self.unscored, self.read = None, 0, False


def predict_files(paths, feature, score, windowing, batch_size=1):
    """Yield ``(path, scores or None, error or None)`` in input order.

    ``score(waves)`` maps equal-length waveforms to ``[batch, classes]``;
    ``windowing`` (:class:`..audio.Windowing`) cuts each file and weighs
    its window scores. Windows of equal length (from one file or several)
    are batched, so a file's result does not depend on its neighbours; at
    most ``8 * batch_size`` windows are held in memory at once, and freed
    heap memory goes back to the system (:class:`HeapLimit`), so neither
    long files nor many files of different lengths grow the process.
    """
    files, groups = deque(), {}
    budget = max(8 * batch_size, 1)
    heap = HeapLimit()

    def run(length):
        batch = groups.pop(length)
        for (f, wav, n), s in zip(batch, score([w for _, w, _ in batch])):
            f.unscored -= 1
            if f.error is None and not np.isfinite(s).all():
                f.error = f'{f.path}: the model gave non-finite scores'
            f.total, f.weight = f.total + n * s, f.weight + n
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
            for wav, n in windowing.windows(path, feature.sample_rate,
                                            feature.n_fft):
                groups.setdefault(len(wav), []).append((f, wav, n))
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


def print_predictions(results, labels, k):
    """Blocks on stdout, one line per failed file on stderr; exit status."""
    failed = 0
    for path, scores, error in results:
        if error:
            print(f'error: {error}', file=sys.stderr, flush=True)
            failed += 1
        else:
            print(format_block(path, scores, labels, k), flush=True)
    return 1 if failed else 0


def format_block(path, scores, labels, k):
    """The seed's output: ``[path]`` then ``Label: score`` lines, best first."""
    lines = [f'[{path}]'] + [f'{labels[i]}: {float(scores[i])}'
                             for i in top_k(scores, k)]
    return '\n'.join(lines)


def check_contract(feature, predict, source):
    """Refuse front-end settings of the ``predict:`` section that
    contradict the model's own."""
    bad = feature.mismatches(sample_rate=predict.sample_rate,
                             n_mels=predict.n_mels)
    if bad:
        raise UserError(f'{source} was trained with other features: '
                        f'{", ".join(bad)}; the stored settings are used '
                        f'automatically, drop these flags')
