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

import paddle

from paddlespeech.cls.config import ConfigArgumentParser
from paddlespeech.cls.errors import UserError
from paddlespeech.cls.features import FEAT_BACKENDS, FeatureConfig, FrontEnd
from paddlespeech.cls.models.panns.registry import (BACKBONES,
                                                    audioset_labels,
                                                    build_tagger)
from paddlespeech.cls.prediction import (add_prediction_args, check_contract,
                                         check_prediction_args, expand_inputs,
                                         predict_files, print_predictions)
from paddlespeech.cls.runtime import run, select_device, set_cpu_threads


def get_parser():
    p = ConfigArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add('--arch', key='tag_arch', choices=sorted(BACKBONES),
          help='PANNs architecture')
    p.add('--checkpoint', key='pretrained_path',
          help='AudioSet weights (.pdparams, e.g. written by the converter) '
          'instead of the pretrained download')
    p.add('--pretrained_path', help='the same as --checkpoint')
    p.add('--feat_backend', choices=FEAT_BACKENDS,
          help='front end used to compute log-mel features')
    add_prediction_args(p)
    return p


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
    model = build_tagger(cfg.tag_arch, cfg.pretrained_path)
    frontend = FrontEnd(feature, cfg.feat_backend)

    @paddle.no_grad()
    def score(waves):
        return model(frontend(waves)[:, None]).numpy()

    results = predict_files(expand_inputs(cfg.wav), feature, score,
                            cfg.window_seconds)
    return print_predictions(results, audioset_labels(), cfg.top_k)


if __name__ == '__main__':
    run(main)
