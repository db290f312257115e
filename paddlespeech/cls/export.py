"""Export a trained checkpoint as a static graph, and the layout of an
export directory.

``inference.json`` (Paddle 3 PIR; ``inference.pdmodel`` from older Paddle)
+ ``inference.pdiparams`` hold the graph, which outputs class scores
(:meth:`..task.Task.probabilities`); ``model.json`` holds what the deployed
model needs to be used correctly: graph input kind (``logmel``
``[batch, frames, n_mels]``, or ``waveform`` ``[batch, samples]`` with the
front end inside the graph), label list and feature configuration. An
export without ``model.json`` (upstream PaddleSpeech's ``export_model.py``)
is read as :func:`upstream_export_meta` describes.

``--format onnx`` writes ``model.onnx`` (converted by paddle2onnx, the
optional extra ``requirements-onnx.txt``) instead of the Paddle graph;
``model.json`` records the ``backend`` that runs it (``paddle`` or
``onnxruntime``) and its ``precision`` (``fp32``; :mod:`.quantize` writes
``int8`` and ``bf16`` exports, with their calibration set and accuracy
check).
"""
import contextlib
import json
import shutil
import sys
from pathlib import Path

import paddle
import paddle.nn as nn
from paddle.static import InputSpec

from . import atomic
from .checkpoint import checkpoint_file_of
from .datasets import ESC50_LABELS, read_label_file
from .errors import UserError
from .features import FeatureConfig, FrontEnd
from .models import load_classifier

GRAPH_PREFIX = 'inference'
META_FILE = 'model.json'
ONNX_FILE = 'model.onnx'
# --format -> the backend that runs it, and back
FORMATS = {'paddle': 'paddle', 'onnx': 'onnxruntime'}
BACKENDS = {b: f for f, b in FORMATS.items()}
EXPORT_FILES = (f'{GRAPH_PREFIX}.json', f'{GRAPH_PREFIX}.pdmodel',
                f'{GRAPH_PREFIX}.pdiparams', ONNX_FILE, META_FILE)


class InferenceModel(nn.Layer):
    """Classifier + its task's scores, optionally preceded by the log-mel
    front end."""

    def __init__(self, classifier, frontend=None):
        super().__init__()
        self.classifier = classifier
        self.frontend = frontend

    def forward(self, x):
        if self.frontend is not None:
            x = self.frontend(x)
        return self.classifier.probabilities(x)


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
    returns its ``model.json`` content. ``old_ir``: the graph as Paddle's
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
    meta = {'input': 'waveform' if include_frontend else 'logmel',
            'label_list': labels, 'feature': feature.to_dict(),
            'checkpoint': str(checkpoint), 'backbone': model.meta['backbone'],
            **{k: model.meta[k] for k in ('clip_seconds',) if k in model.meta},
            'backend': FORMATS[format],
            'precision': 'fp32', **model.task.meta()}
    write_meta(folder, meta)
    return meta


def write_meta(folder, meta):
    atomic.write_text(Path(folder) / META_FILE, json.dumps(meta, indent=2))


def check_output_dir(output_dir):
    """Refuse to replace a directory that is not an export (a mistyped
    ``--output_dir .`` must not delete a working tree)."""
    out = Path(output_dir)
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not any(
            (out / name).exists() for name in EXPORT_FILES)):
        raise UserError(f'--output_dir {out} exists and is not an export '
                        f'directory (it would be replaced): choose a new '
                        f'or an export directory')


def read_export(model_dir, label_file=None):
    """``(graph_path, params_path, meta)``; a clear error if a file is
    missing. ``label_file``: class names of an export without
    ``model.json``."""
    model_dir = Path(model_dir)
    meta_file = model_dir / META_FILE
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else None
    if meta and meta.get('backend') == 'onnxruntime':
        if not (model_dir / ONNX_FILE).is_file():
            raise UserError(f'export directory {model_dir} is incomplete: '
                            f'missing {model_dir / ONNX_FILE} (run '
                            f'export_model.py --format onnx --output_dir '
                            f'{model_dir})')
        return model_dir / ONNX_FILE, None, meta
    params = model_dir / f'{GRAPH_PREFIX}.pdiparams'
    graphs = [model_dir / f'{GRAPH_PREFIX}{s}' for s in ('.json', '.pdmodel')]
    graph = next((g for g in graphs if g.is_file()), graphs[0])
    missing = [str(p) for p in (graph, params) if not p.is_file()]
    if missing:
        ckpt = checkpoint_file_of(model_dir)
        if ckpt is not None:
            raise UserError(
                f'{model_dir} is a training checkpoint, not an export: '
                f'export it with export_model.py --checkpoint {ckpt} '
                f'--output_dir <new dir> and pass that dir, or predict with '
                f'predict.py --checkpoint {ckpt}')
        raise UserError(f'export directory {model_dir} is incomplete: missing '
                        f'{", ".join(missing)} (run export_model.py '
                        f'--output_dir {model_dir})')
    if meta is None:
        return graph, params, upstream_export_meta(model_dir, graph,
                                                   label_file)
    return graph, params, meta


def upstream_export_meta(model_dir, graph, label_file=None):
    """What an export without ``model.json`` (upstream PaddleSpeech's
    ``export_model.py``: log-mel input, default front end) needs: the label
    names of ``label_file``, else ESC-50's, and whether the graph ends in
    logits (upstream's does), to which the predictor then applies softmax.
    Says on stderr what it assumed."""
    labels = read_label_file(label_file) if label_file else \
        list(ESC50_LABELS)
    logits = graph_activation(graph) is None
    print(f'note: {model_dir} has no {META_FILE} (an upstream PaddleSpeech '
          f'export?): read as log-mel input with the default front end, '
          f'classes named {f"from {label_file}" if label_file else "as ESC-50"}'
          f'{", softmax applied to its logits" if logits else ""}',
          file=sys.stderr, flush=True)
    return {'input': 'logmel', 'label_list': labels,
            'feature': FeatureConfig().to_dict(), 'logits': logits}


def graph_activation(graph):
    """``softmax`` or ``sigmoid`` when the graph's last operation (before
    its output) is one, else None (the graph outputs logits)."""
    graph = Path(graph)
    if graph.suffix == '.json':  # Paddle 3 PIR: ops named '1.<op>'
        blocks = json.loads(graph.read_text())['program']['regions'][0][
            'blocks']
        ops = [op['#'].rpartition('.')[2] for op in blocks[0]['ops']]
    else:
        from paddle.base.proto import framework_pb2
        program = framework_pb2.ProgramDesc.FromString(graph.read_bytes())
        ops = [op.type for op in program.blocks[0].ops]
    ops = [op for op in ops if op not in ('fetch', 'scale')]
    return ops[-1] if ops and ops[-1] in ('softmax', 'sigmoid') else None
