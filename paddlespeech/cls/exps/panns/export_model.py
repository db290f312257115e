"""Export a trained checkpoint as a static graph for paddle.inference.

The graph outputs class probabilities (softmax; sigmoid per class for a
model trained on multi-label data). By default it takes log-mel
features ``[batch, frames, n_mels]`` (as in the original recipe); with
``--include_frontend`` it takes the raw waveform ``[batch, samples]`` at
the model's sample rate and computes the features inside the graph.
``model.json`` beside the graph records which, plus labels and features.
"""
import paddlespeech.cls  # noqa: F401  (must precede paddle: MKL setup)

from pathlib import Path

import paddle
import paddle.nn as nn
from paddle.static import InputSpec

from paddlespeech.cls.checkpoint import load_classifier
from paddlespeech.cls.config import ConfigArgumentParser
from paddlespeech.cls.export_meta import GRAPH_PREFIX, write_export_meta
from paddlespeech.cls.features import paddle_logmel
from paddlespeech.cls.runtime import run


class InferenceModel(nn.Layer):
    """Classifier + softmax (sigmoid when multi-label), optionally preceded
    by the log-mel front end."""

    def __init__(self, classifier, frontend=None):
        super().__init__()
        self.classifier = classifier
        self.frontend = frontend

    def forward(self, x):
        if self.frontend is not None:
            x = self.frontend(x)
        return self.classifier.probabilities(x)


def export(checkpoint, output_dir, include_frontend=False):
    model, labels, feature = load_classifier(checkpoint)
    frontend = paddle_logmel(feature) if include_frontend else None
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
            'checkpoint': str(checkpoint)}
    if model.multi_label:  # the graph ends in a sigmoid
        meta['multi_label'] = True
    write_export_meta(output_dir, meta)
    return output_dir


def get_parser():
    p = ConfigArgumentParser(description=__doc__.splitlines()[0])
    p.add('--checkpoint', required=True,
          help='model.pdparams written by train.py (or its epoch_N dir)')
    p.add('--output_dir', key='export_dir',
          help='directory for inference.* and model.json')
    p.add('--include_frontend', action='store_true',
          help='graph input is the raw waveform instead of log-mel features')
    return p


def main(argv):
    cfg = get_parser().parse_config(argv)
    out = export(cfg.checkpoint, cfg.export_dir,
                 getattr(cfg, 'include_frontend', False))
    print(f'exported {cfg.checkpoint} to {out}: '
          f'{", ".join(sorted(p.name for p in out.iterdir()))}')
    return 0


if __name__ == '__main__':
    run(main)
