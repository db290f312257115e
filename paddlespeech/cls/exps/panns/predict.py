"""Predict the class of audio files with a trained checkpoint (dynamic graph).

Scores are softmax probabilities, or independent sigmoid scores (not
summing to one) for a model trained on multi-label data. Files longer than
--window_seconds are classified window by window and the window scores
averaged, so any length fits in memory. A file that
cannot be used gets one ``error:`` line on stderr and the others are still
predicted; the exit status is 0 only if every file was predicted.
"""
import paddlespeech.cls  # noqa: F401  (must precede paddle: MKL setup)

import argparse

import paddle

from paddlespeech.cls.config import ConfigArgumentParser
from paddlespeech.cls.features import FEAT_BACKENDS, FrontEnd
from paddlespeech.cls.models import BACKBONES, load_classifier
from paddlespeech.cls.prediction import (add_prediction_args, check_contract,
                                         check_prediction_args, expand_inputs,
                                         predict_files, print_predictions)
from paddlespeech.cls.runtime import run, select_device, set_cpu_threads


def get_parser():
    p = ConfigArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add('--feat_backend', choices=FEAT_BACKENDS,
          help='front end used to compute log-mel features')
    p.add('--checkpoint', required=True,
          help='model.pdparams written by train.py (or its epoch_N dir)')
    p.add('--backbone', key='expected_backbone',
          choices=sorted(BACKBONES),
          help='only checked: must match the checkpoint')
    add_prediction_args(p)
    return p


def main(argv):
    cfg = get_parser().parse_config(argv)
    check_prediction_args(cfg)
    select_device(cfg.device)
    set_cpu_threads(cfg.cpu_threads)
    model, labels, feature = load_classifier(cfg.checkpoint,
                                             cfg.expected_backbone)
    check_contract(feature, cfg, cfg.checkpoint)
    paths = expand_inputs(cfg.wav)
    extract = FrontEnd(feature, cfg.feat_backend)

    @paddle.no_grad()
    def score(waves):
        return model.probabilities(extract(waves)).numpy()

    return print_predictions(
        predict_files(paths, feature, score, cfg.window_seconds),
        labels, cfg.top_k)


if __name__ == '__main__':
    run(main)
