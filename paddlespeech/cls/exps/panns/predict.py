"""Predict the class of audio files with a trained checkpoint (dynamic graph).

Scores are softmax probabilities, or independent sigmoid scores (not
summing to one) for a model trained on multi-label data.
"""
from paddlespeech.cls.runtime import prepare_process, run

prepare_process()

from paddlespeech.cls import prediction
from paddlespeech.cls.config import LABEL_FILE_HELP, prediction_parser
from paddlespeech.cls.models import BACKBONES
from paddlespeech.cls.opener import open_model


def get_parser():
    p = prediction_parser(__doc__)
    p.add('--checkpoint', required=True,
          help='model.pdparams written by train.py (or its epoch_N dir), or '
          'by upstream PaddleSpeech')
    p.add('--backbone', key='expected_backbone', choices=sorted(BACKBONES),
          help='only checked: must match the checkpoint')
    p.add('--label_file', help=LABEL_FILE_HELP)
    return p


def open_for(cfg):
    return open_model(checkpoint=cfg.checkpoint, device=cfg.device,
                      cpu_threads=cfg.cpu_threads, label_file=cfg.label_file,
                      backbone=cfg.expected_backbone,
                      feat_backend=cfg.feat_backend)


def main(argv):
    return prediction.main(argv, get_parser, open_for)


if __name__ == '__main__':
    run(main)
