"""Lower-precision exports for CPUs: INT8 post-training quantisation and
BF16, their calibration clips, and the accuracy guard that refuses an
export which loses too much.

INT8 takes one of two routes, by export format: ``paddle`` quantises the
graph with Paddle's ``PostTrainingQuantization`` (per-channel weights) and
runs it through oneDNN INT8 (VNNI / AMX); ``onnx`` uses ONNX Runtime's
``quantize_static`` (QDQ, per-channel QInt8 weights, QUInt8 activations).
BF16 is the fp32 Paddle graph run with oneDNN's bfloat16 kernels; it needs
a CPU with AVX-512 BF16 or AMX. The calibration clips come from the
training folds (never the dev fold) or from files the user names; the
accuracy check runs the dev fold (or other data) through the fp32 and the
low-precision model, and the export is written (atomically) only if the
score falls by at most ``max_drop`` points.
"""
import dataclasses
import logging
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import atomic
from .audio import Windowing
from .datasets import load_table
from .datasets.clips import DatasetError
from .artifact import GRAPH_PREFIX, ONNX_FILE, write_meta
from .errors import UserError
from .export import check_output_dir, write_export
from .features import FrontEnd
from .inference import Predictor
from .logs import get_logger
from .prediction import expand_inputs, predict_files
from .runtime import check_bf16, loggers_quieted, progress_on_terminal_only

log = get_logger(__name__)



@dataclass
class ClipSet:
    """Clips for calibration or the accuracy check: ``paths``, their
    labels (``targets``: class indices or multi-hot rows; None when
    unlabelled) and what ``model.json`` records about them."""
    paths: list
    targets: list = None
    about: dict = field(default_factory=dict)


def _table(data, train, data_dir=None):
    """The clip table of the ``data:`` section's dataset, or of
    ``data_dir``, with the folds training gave it (:func:`.load_table`)."""
    if data_dir is not None:
        data = dataclasses.replace(data, data_dir=data_dir)
    with loggers_quieted({'paddlespeech.cls.datasets': logging.ERROR}):
        return load_table(data, train)


def calibration_set(data, train, source=None, clips=200, seed=0):
    """Up to ``clips`` clips from the training folds (all but the dev fold
    ``data.split``) of ``data.data_dir``, or of ``source`` when it is a
    dataset; classes take turns (seeded order), so each is represented.
    ``source`` may also be a text file listing audio files (one per line,
    relative to the file) or a folder of audio files. ``train``: the
    ``train:`` section, whose run assigned the folds."""
    if clips < 1:
        raise UserError(f'--calib_clips must be at least 1, got {clips}')
    if source is not None and Path(source).is_file():
        listed = Path(source)
        lines = [ln.strip() for ln in listed.read_text().splitlines()]
        paths = [listed.parent / ln for ln in lines if ln]
        if not paths:
            raise UserError(f'--calib_data {listed} lists no files')
        return ClipSet(paths[:clips], about={
            'source': str(listed), 'clips': len(paths[:clips])})
    try:
        table = _table(data, train, source)
    except DatasetError:
        if source is None:
            raise
        paths = expand_inputs([source])
        return ClipSet(paths[:clips], about={
            'source': str(source), 'clips': len(paths[:clips])})
    folds = sorted(set(table.fold_ids) - {data.split})
    items = table.items(set(folds))
    rng = np.random.default_rng(seed)
    turns, keyed = {}, []
    for i in rng.permutation(len(items)):
        y = items[i][1]
        key = tuple(np.flatnonzero(y)) if np.ndim(y) else int(y)
        turns[key] = turns.get(key, -1) + 1
        keyed.append((turns[key], i))
    chosen = [items[i][0] for _, i in sorted(keyed)[:clips]]
    return ClipSet(chosen, about={
        'source': str(table.source), 'folds': folds, 'clips': len(chosen),
        'seed': seed,
        'files': [str(Path(p).relative_to(table.root)) for p in chosen]})


def check_set(data, train, source=None):
    """The dev fold ``data.split`` of ``data.data_dir`` (or of the dataset
    ``source``), labelled."""
    table = _table(data, train, source)
    if data.split not in table.fold_ids:
        raise UserError(f'{table.source} has folds {table.fold_ids}; dev '
                        f'fold {data.split} is not one of them (set --split)')
    items = table.items({data.split})
    return ClipSet([p for p, _ in items], [y for _, y in items], about={
        'data': str(table.source), 'fold': data.split, 'clips': len(items)})


def graph_inputs(clipset, meta, window_seconds=None):
    """The graph's input for each calibration clip (its first window, cut
    as prediction cuts it), one clip per batch: log-mel
    ``[1, frames, n_mels]`` or waveform."""
    feature = meta.feature
    frontend = FrontEnd(feature, 'numpy')
    windowing = Windowing.of_model(meta.clip_seconds, window_seconds)
    for path in clipset.paths:
        wav, _ = next(iter(windowing.windows(path, feature.sample_rate,
                                             feature.n_fft)))
        x = wav[None] if meta.takes_waveform else \
            frontend.numpy([wav])
        yield x.astype(np.float32)


def paddle_int8(fp32_dir, out_dir, inputs, feed='feats'):
    """Post-training INT8 quantisation of the older-format Paddle graph in
    ``fp32_dir`` (``inference.pdmodel``) into ``out_dir``: per-channel
    weight scales, activation scales from the ``inputs`` batches (fed as
    ``feed``). Paddle 3.3's quantiser works on that format only."""
    import paddle
    from paddle.static.quantization import PostTrainingQuantization
    from paddle.static.quantization import \
        post_training_quantization as ptq_module, quantization_pass
    inputs = list(inputs)
    with paddle.pir_utils.OldIrGuard(), loggers_quieted({
            ptq_module.__name__: logging.WARNING,
            'paddle.static.io': logging.ERROR}), \
            progress_on_terminal_only(ptq_module, quantization_pass):
        paddle.enable_static()
        try:
            ptq = PostTrainingQuantization(
                paddle.static.Executor(paddle.CPUPlace()), str(fp32_dir),
                model_filename=f'{GRAPH_PREFIX}.pdmodel',
                params_filename=f'{GRAPH_PREFIX}.pdiparams',
                data_loader=lambda: ({feed: x} for x in inputs),
                batch_nums=len(inputs), algo='hist',
                quantizable_op_type=['conv2d', 'matmul', 'matmul_v2'],
                weight_quantize_type='channel_wise_abs_max')
            ptq.quantize()
            ptq.save_quantized_model(
                str(out_dir), model_filename=f'{GRAPH_PREFIX}.pdmodel',
                params_filename=f'{GRAPH_PREFIX}.pdiparams')
        finally:
            paddle.disable_static()
    for extra in Path(out_dir).glob('*.info'):
        extra.unlink()


def onnx_int8(model, out, inputs):
    """ONNX Runtime static INT8 quantisation of ``model`` into ``out``
    (QDQ format, per-channel QInt8 weights, QUInt8 activations, min-max
    ranges from the ``inputs`` batches). Convolutions and matrix products
    only: quantising the final softmax would round the scores to 1/255."""
    from .onnx_export import require
    require('onnxruntime')
    from onnxruntime import quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    name = ort.InferenceSession(
        str(model), options,
        providers=['CPUExecutionProvider']).get_inputs()[0].name

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.batches = iter(inputs)

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {name: x}

    # the sessions the quantiser opens warn of every initializer that
    # paddle2onnx left unused ("Removing initializer")
    ort.set_default_logger_severity(3)
    try:
        with tempfile.TemporaryDirectory() as tmp, loggers_quieted(
                {'onnxruntime.quantization': logging.WARNING}):
            pre = Path(tmp) / 'pre.onnx'
            quant_pre_process(str(model), str(pre))
            q.quantize_static(str(pre), str(out), Reader(),
                              quant_format=q.QuantFormat.QDQ,
                              per_channel=True,
                              weight_type=q.QuantType.QInt8,
                              activation_type=q.QuantType.QUInt8,
                              op_types_to_quantize=['Conv', 'MatMul', 'Gemm'])
    finally:
        ort.set_default_logger_severity(2)  # its default: warnings


def accuracy_check(fp32_dir, low_dir, clipset, window_seconds=None,
                   batch_size=8, cpu_threads=None):
    """Score ``clipset`` with both exports as ``deploy/predict.py`` does
    (the model's windowing; ``window_seconds`` overrides its length): the
    task's score (accuracy, or mAP for multi-label) of each in points, the
    drop, and how often their top-1 classes agree (%)."""
    scores = []
    for folder in (fp32_dir, low_dir):
        predictor = Predictor(str(folder), 'cpu', cpu_threads)
        out = []
        windowing = Windowing.of_model(predictor.clip_seconds, window_seconds)
        for path, s, error in predict_files(
                clipset.paths, predictor.feature, predictor, windowing,
                batch_size):
            if error:
                raise UserError(f'accuracy check: {error}')
            out.append(s)
        scores.append(np.stack(out))
        task = predictor.task
        del predictor
    ref, low = (100 * task.evaluate(s, clipset.targets)[task.score]
                for s in scores)
    agree = 100 * float(np.mean(scores[0].argmax(1) == scores[1].argmax(1)))
    return {**clipset.about, 'metric': task.score, 'fp32': round(ref, 4),
            'quantised': round(low, 4), 'drop': round(ref - low, 4),
            'top1_agreement': round(agree, 4)}


def export_low_precision(checkpoint, output_dir, precision, calib, check,
                         format='paddle', max_drop=1.0, force=False,
                         label_file=None, window_seconds=None,
                         cpu_threads=None):
    """Export ``checkpoint`` in ``precision`` (``int8``: calibrated on the
    :class:`ClipSet` ``calib``; ``bf16``) and ``format``, after checking it
    on ``check`` against the fp32 export: written to ``output_dir`` only
    if the score drops by at most ``max_drop`` points (or ``force``);
    returns the check's figures."""
    if precision not in ('int8', 'bf16'):
        raise UserError(f'low precision is int8 or bf16, got {precision!r}')
    if precision == 'bf16':
        if format != 'paddle':
            raise UserError('--precision bf16 runs through Paddle\'s oneDNN: '
                            'use --format paddle (or --quantize int8 for '
                            'ONNX)')
        check_bf16()
    check_output_dir(output_dir)
    with tempfile.TemporaryDirectory(prefix='export_') as stage:
        base, low = Path(stage) / 'fp32', Path(stage) / precision
        base.mkdir()
        low.mkdir()
        meta = write_export(base, checkpoint, label_file=label_file,
                            format=format)
        if meta.takes_waveform:
            raise UserError('low-precision exports take log-mel input')
        if precision == 'bf16':
            for f in base.iterdir():
                shutil.copy(f, low / f.name)
        else:
            inputs = graph_inputs(calib, meta, window_seconds)
            if format == 'paddle':
                old = Path(stage) / 'fp32_pdmodel'
                old.mkdir()
                write_export(old, checkpoint, label_file=label_file,
                             old_ir=True)
                paddle_int8(old, low, _progress(inputs, len(calib.paths)))
            else:
                onnx_int8(base / ONNX_FILE, low / ONNX_FILE,
                          _progress(inputs, len(calib.paths)))
            meta.calibration = calib.about
        meta.precision = precision
        write_meta(low, meta)
        result = accuracy_check(base, low, check, window_seconds,
                                cpu_threads=cpu_threads)
        result.update(max_drop=max_drop, forced=bool(force))
        log.warning(describe(result, precision))
        if result['drop'] > max_drop and not force:
            raise UserError(
                f'{precision} export refused: {result["metric"]} fell '
                f'{result["drop"]:.2f} points ({result["fp32"]:.2f} -> '
                f'{result["quantised"]:.2f}), more than --max_drop '
                f'{max_drop:g}; calibrate on other clips (--calib_data) or '
                f'pass --force to write it anyway')
        meta.accuracy_check = result
        write_meta(low, meta)
        atomic.write_dir(output_dir, lambda tmp: [
            shutil.copy(f, Path(tmp) / f.name) for f in low.iterdir()])
    return result


def describe(result, precision):
    return (f'accuracy check on {result.get("data", "?")} fold '
            f'{result.get("fold", "?")} ({result["clips"]} clips): '
            f'{result["metric"]} fp32 {result["fp32"]:.2f}, {precision} '
            f'{result["quantised"]:.2f} (drop {result["drop"]:.2f} points), '
            f'top-1 agreement {result["top1_agreement"]:.1f} %')


def _progress(inputs, total):
    from tqdm import tqdm
    return tqdm(inputs, total=total, desc='calibration clips', leave=False,
                file=sys.stderr, disable=None)  # None: on a terminal only
