"""Predict the class of audio files with a trained checkpoint (dynamic graph).

Scores are softmax probabilities, or independent sigmoid scores (not
summing to one) for a model trained on multi-label data.
"""
from paddlespeech.cls.runtime import prepare_process, run

prepare_process()

from paddlespeech.cls.models import BACKBONES
from paddlespeech.cls.prediction import (LABEL_FILE_HELP, check_contract,
                                         expand_inputs, predict_files,
                                         prediction_parser, print_predictions,
                                         start)
from paddlespeech.cls.scoring import checkpoint_scorer


def get_parser():
    p = prediction_parser(__doc__)
    p.add('--checkpoint', required=True,
          help='model.pdparams written by train.py (or its epoch_N dir), or '
          'by upstream PaddleSpeech')
    p.add('--backbone', key='expected_backbone', choices=sorted(BACKBONES),
          help='only checked: must match the checkpoint')
    p.add('--label_file', help=LABEL_FILE_HELP)
    return p


def main(argv):
    cfg = get_parser().parse_config(argv)
    start(cfg)
    s = checkpoint_scorer(cfg.checkpoint, cfg.expected_backbone,
                          cfg.label_file, cfg.feat_backend)
    check_contract(s.feature, cfg, cfg.checkpoint)
    results = predict_files(expand_inputs(cfg.wav), s.feature, s.score,
                            s.windowing(cfg.window_seconds))
    return print_predictions(results, s.labels, cfg.top_k)


if __name__ == '__main__':
    run(main)
