"""Export a trained checkpoint as a static graph, and the layout of an
export directory.

``inference.json`` (Paddle 3 PIR; ``inference.pdmodel`` from older Paddle)
+ ``inference.pdiparams`` hold the graph, which outputs class scores
(:meth:`..task.Task.probabilities`); ``model.json`` holds what the deployed
model needs to be used correctly: graph input kind (``logmel``
``[batch, frames, n_mels]``, or ``waveform`` ``[batch, samples]`` with the
front end inside the graph), label list and feature configuration.
"""
import json
from pathlib import Path

import paddle
import paddle.nn as nn
from paddle.static import InputSpec

from . import atomic
from .errors import UserError
from .features import FrontEnd
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


def export(checkpoint, output_dir, include_frontend=False):
    """Write the graph and ``model.json`` of ``checkpoint`` into
    ``output_dir``; returns it."""
    model, labels, feature = load_classifier(checkpoint)
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


def read_export(model_dir):
    """``(graph_path, params_path, meta)``; a clear error if a file is missing."""
    model_dir = Path(model_dir)
    params = model_dir / f'{GRAPH_PREFIX}.pdiparams'
    graphs = [model_dir / f'{GRAPH_PREFIX}{s}' for s in ('.json', '.pdmodel')]
    graph = next((g for g in graphs if g.is_file()), graphs[0])
    missing = [str(p) for p in (graph, params, model_dir / META_FILE)
               if not p.is_file()]
    if missing:
        raise UserError(f'export directory {model_dir} is incomplete: missing '
                        f'{", ".join(missing)} (run export_model.py '
                        f'--output_dir {model_dir})')
    meta = json.loads((model_dir / META_FILE).read_text())
    return graph, params, meta
