"""Export a trained checkpoint as a static graph (or ONNX) with its
``model.json``: the files and the schema are :mod:`.artifact`'s.

The graph outputs class scores (:meth:`..task.Task.probabilities`) and
the backbone's embedding (its second output) of log-mel input ``[batch, frames, n_mels]``, or of waveforms ``[batch,
samples]`` with the front end inside the graph (``--include_frontend``).
``--format onnx`` writes ``model.onnx`` (converted by paddle2onnx, the
optional extra ``requirements-onnx.txt``) instead of the Paddle graph;
:mod:`.quantize` writes ``int8`` and ``bf16`` exports.
"""
import contextlib
import shutil
from pathlib import Path

import paddle
import paddle.nn as nn
from paddle.static import InputSpec

from . import atomic
from .artifact import (EXPORT_FILES, FORMATS, GRAPH_PREFIX, ONNX_FILE,
                       ExportMeta, write_meta)
from .errors import UserError
from .features import FrontEnd
from .models import load_classifier


class InferenceModel(nn.Layer):
    """Classifier -> (its task's scores, the backbone's embedding),
    optionally preceded by the log-mel front end."""

    def __init__(self, classifier, frontend=None):
        super().__init__()
        self.classifier = classifier
        self.frontend = frontend

    def forward(self, x):
        if self.frontend is not None:
            x = self.frontend(x)
        embedding = self.classifier.embed(x)
        scores = self.classifier.task.probabilities(
            self.classifier.head(embedding))
        return scores, embedding


def export(checkpoint, output_dir, include_frontend=False, label_file=None,
           format='paddle'):
    """Write the graph and ``model.json`` of ``checkpoint`` into
    ``output_dir`` (replaced as a whole, atomically); returns it.
    ``label_file``: class names of a checkpoint without metadata
    (:func:`..models.classifier.upstream_meta`); ``format``: ``paddle``
    or ``onnx``."""
    check_output_dir(output_dir)
    return atomic.write_dir(output_dir, lambda folder: write_export(
        folder, checkpoint, include_frontend, label_file, format))


def write_export(folder, checkpoint, include_frontend=False, label_file=None,
                 format='paddle', old_ir=False):
    """The files of an fp32 export in the existing directory ``folder``;
    returns its :class:`..artifact.ExportMeta`. ``old_ir``: the graph as Paddle's
    older ``inference.pdmodel`` (what post-training quantisation reads)."""
    if format not in FORMATS:
        raise UserError(f'--format must be one of {sorted(FORMATS)}, got '
                        f'{format!r}')
    if format == 'onnx' and include_frontend:
        raise UserError('--format onnx exports log-mel input only: '
                        'paddle2onnx 2.1 has no conversion for the front '
                        'end\'s STFT (fft_r2c, frame); drop '
                        '--include_frontend (the predictor computes the '
                        'features)')
    model, labels, feature = load_classifier(checkpoint,
                                             label_file=label_file)
    frontend = FrontEnd(feature, 'paddle').layer if include_frontend \
        else None
    net = InferenceModel(model, frontend)
    net.eval()
    if include_frontend:
        spec = InputSpec([None, None], 'float32', name='waveform')
    else:
        spec = InputSpec([None, None, feature.n_mels], 'float32', name='feats')
    folder = Path(folder)
    graph_dir = folder / '.paddle' if format == 'onnx' else folder
    with (paddle.pir_utils.OldIrGuard() if old_ir else
          contextlib.nullcontext()):
        static = paddle.jit.to_static(net, input_spec=[spec], full_graph=True)
        paddle.jit.save(static, str(graph_dir / GRAPH_PREFIX))
    if format == 'onnx':
        from .onnx_export import to_onnx
        to_onnx(graph_dir / f'{GRAPH_PREFIX}.json',
                graph_dir / f'{GRAPH_PREFIX}.pdiparams', folder / ONNX_FILE)
        shutil.rmtree(graph_dir)
    for extra in folder.glob(f'{GRAPH_PREFIX}.pdiparams.info'):
        extra.unlink()
    meta = ExportMeta(
        label_list=labels, feature=feature,
        input='waveform' if include_frontend else 'logmel',
        backbone=model.meta['backbone'],
        multi_label=model.task.multi_label,
        clip_seconds=model.meta.get('clip_seconds'),
        backend=FORMATS[format], checkpoint=str(checkpoint),
        embedding_size=model.backbone.emb_size,
        thresholds=model.meta.get('thresholds'))
    write_meta(folder, meta)
    return meta


def check_output_dir(output_dir):
    """Refuse to replace a directory that is not an export (a mistyped
    ``--output_dir .`` must not delete a working tree)."""
    out = Path(output_dir)
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not any(
            (out / name).exists() for name in EXPORT_FILES)):
        raise UserError(f'--output_dir {out} exists and is not an export '
                        f'directory (it would be replaced): choose a new '
                        f'or an export directory')
