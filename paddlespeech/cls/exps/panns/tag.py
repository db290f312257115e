"""Tag audio files with the 527 AudioSet classes of a pretrained PANNs model.

Prints ``[path]`` and the ``top_k`` best ``Label: score`` lines per file.
Scores are independent sigmoid probabilities (AudioSet is multi-label), so
they do not sum to one; files longer than --window_seconds are scored
window by window and the scores averaged. An unreadable file gets one
``error:`` line on stderr, the others are still tagged, and the exit status
is 1. Without --checkpoint the AudioSet weights are downloaded once into the
cache ($PADDLESPEECH_CLS_HOME, default ~/.cache/paddlespeech/cls); a
converted original checkpoint (see ``python -m
paddlespeech.cls.models.panns.convert``) can be given instead.
"""
import paddlespeech.cls  # noqa: F401  (must precede paddle: MKL setup)

import argparse
import csv
from pathlib import Path

import paddle

from paddlespeech.cls.config import ConfigArgumentParser
from paddlespeech.cls.errors import UserError
from paddlespeech.cls.features import FeatureConfig, batch_frontend
from paddlespeech.cls.models import BACKBONES
from paddlespeech.cls.models.panns.weights import load_pretrained
from paddlespeech.cls.prediction import (add_prediction_args, check_contract,
                                         check_prediction_args, expand_inputs,
                                         predict_files, print_predictions)
from paddlespeech.cls.runtime import run, select_device, set_cpu_threads

LABELS_CSV = (Path(__file__).resolve().parents[2] / 'models' / 'panns' /
              'assets' / 'class_labels_indices.csv')


def audioset_labels(path=LABELS_CSV):
    """Display names of the AudioSet classes, in model output order."""
    with open(path, newline='', encoding='utf-8') as f:
        rows = sorted(csv.DictReader(f), key=lambda row: int(row['index']))
    return [row['display_name'] for row in rows]


def get_parser():
    p = ConfigArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add('--arch', key='backbone', choices=sorted(BACKBONES),
          help='PANNs architecture')
    p.add('--checkpoint', help='AudioSet weights (.pdparams, e.g. written '
          'by the converter) instead of the pretrained download')
    p.add('--pretrained_path', help='local .pdparams used instead of the '
          'download when --checkpoint is not given')
    p.add('--feat_backend', choices=['numpy', 'paddle'],
          help='front end used to compute log-mel features')
    add_prediction_args(p)
    return p


def load_tagger(arch, weights_path=None):
    """``arch`` with its 527-class AudioSet head, weights loaded, eval mode."""
    state = load_pretrained(arch, weights_path)
    model = BACKBONES[arch](extract_embedding=False)
    model.set_state_dict(state)
    model.eval()
    return model


def main(argv):
    cfg = get_parser().parse_config(argv)
    check_prediction_args(cfg)
    select_device(cfg.device)
    set_cpu_threads(cfg.cpu_threads)
    feature = FeatureConfig()
    if cfg.feature != feature:
        raise UserError('the PANNs weights were trained with the default '
                        'feature settings; remove the feature section from '
                        f'{cfg.config} to tag with them')
    check_contract(feature, cfg, 'the AudioSet weights')
    model = load_tagger(cfg.backbone,
                        getattr(cfg, 'checkpoint', None) or cfg.pretrained_path)
    frontend = batch_frontend(feature, cfg.feat_backend)

    @paddle.no_grad()
    def score(waves):
        return model(frontend(waves)[:, None]).numpy()

    results = predict_files(expand_inputs(cfg.wav), feature, score,
                            cfg.window_seconds)
    return print_predictions(results, audioset_labels(), cfg.top_k)


if __name__ == '__main__':
    run(main)
