"""Export a trained checkpoint as a static graph for paddle.inference.

The graph outputs class probabilities (softmax; sigmoid per class for a
model trained on multi-label data). By default it takes log-mel
features ``[batch, frames, n_mels]`` (as in the original recipe); with
``--include_frontend`` it takes the raw waveform ``[batch, samples]`` at
the model's sample rate and computes the features inside the graph.
``model.json`` beside the graph records which, plus labels and features.
"""
import paddlespeech.cls  # noqa: F401  (must precede paddle: MKL setup)

from paddlespeech.cls.config import ConfigArgumentParser
from paddlespeech.cls.export import export
from paddlespeech.cls.prediction import LABEL_FILE_HELP
from paddlespeech.cls.runtime import run


def get_parser():
    p = ConfigArgumentParser(description=__doc__)
    p.add('--checkpoint', required=True,
          help='model.pdparams written by train.py (or its epoch_N dir)')
    p.add('--output_dir', key='export_dir',
          help='directory for inference.* and model.json')
    p.add('--include_frontend', action='store_true',
          help='graph input is the raw waveform instead of log-mel features')
    p.add('--label_file', help=LABEL_FILE_HELP)
    return p


def main(argv):
    cfg = get_parser().parse_config(argv)
    out = export(cfg.checkpoint, cfg.export_dir, cfg.include_frontend,
                 cfg.label_file)
    print(f'exported {cfg.checkpoint} to {out}: '
          f'{", ".join(sorted(p.name for p in out.iterdir()))}')
    return 0


if __name__ == '__main__':
    run(main)
