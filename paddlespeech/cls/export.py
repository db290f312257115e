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
"""
import json
import sys
from pathlib import Path

import paddle
import paddle.nn as nn
from paddle.static import InputSpec

from . import atomic
from .datasets import ESC50_LABELS, read_label_file
from .errors import UserError
from .features import FeatureConfig, FrontEnd
from .models import load_classifier

GRAPH_PREFIX = 'inference'
META_FILE = 'model.json'


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


def export(checkpoint, output_dir, include_frontend=False, label_file=None):
    """Write the graph and ``model.json`` of ``checkpoint`` into
    ``output_dir``; returns it. ``label_file``: class names of a checkpoint
    without metadata (:func:`..models.classifier.upstream_meta`)."""
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
    static = paddle.jit.to_static(net, input_spec=[spec], full_graph=True)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paddle.jit.save(static, str(output_dir / GRAPH_PREFIX))
    meta = {'input': 'waveform' if include_frontend else 'logmel',
            'label_list': labels, 'feature': feature.to_dict(),
            'checkpoint': str(checkpoint), **model.task.meta()}
    atomic.write_text(output_dir / META_FILE, json.dumps(meta, indent=2))
    return output_dir


def read_export(model_dir, label_file=None):
    """``(graph_path, params_path, meta)``; a clear error if a file is
    missing. ``label_file``: class names of an export without
    ``model.json``."""
    model_dir = Path(model_dir)
    params = model_dir / f'{GRAPH_PREFIX}.pdiparams'
    graphs = [model_dir / f'{GRAPH_PREFIX}{s}' for s in ('.json', '.pdmodel')]
    graph = next((g for g in graphs if g.is_file()), graphs[0])
    missing = [str(p) for p in (graph, params) if not p.is_file()]
    if missing:
        raise UserError(f'export directory {model_dir} is incomplete: missing '
                        f'{", ".join(missing)} (run export_model.py '
                        f'--output_dir {model_dir})')
    if not (model_dir / META_FILE).is_file():
        return graph, params, upstream_export_meta(model_dir, graph,
                                                   label_file)
    return graph, params, json.loads((model_dir / META_FILE).read_text())


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
