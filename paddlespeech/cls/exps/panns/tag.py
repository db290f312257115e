"""Tag audio files with the 527 AudioSet classes of a pretrained PANNs model.

Scores are independent sigmoid probabilities (AudioSet is multi-label), so
they do not sum to one. Without --checkpoint the AudioSet weights are
downloaded once into the cache ($PADDLESPEECH_CLS_HOME, default
~/.cache/paddlespeech/cls); a converted original checkpoint (see
``python -m paddlespeech.cls.exps.panns.convert``) can be given instead.
"""
from paddlespeech.cls.runtime import prepare_process, run

prepare_process()

from paddlespeech.cls.models.panns.registry import BACKBONES
from paddlespeech.cls.prediction import (check_contract, expand_inputs,
                                         predict_files, prediction_parser,
                                         print_predictions, start)
from paddlespeech.cls.scoring import tagger_scorer


def get_parser():
    p = prediction_parser(__doc__)
    p.add('--arch', key='tag_arch', choices=sorted(BACKBONES),
          help='PANNs architecture')
    p.add('--checkpoint', key='pretrained_path',
          help='AudioSet weights (.pdparams, e.g. written by the converter) '
          'instead of the pretrained download')
    p.add('--pretrained_path', help='the same as --checkpoint')
    return p


def main(argv):
    cfg = get_parser().parse_config(argv)
    start(cfg)
    s = tagger_scorer(cfg.tag_arch, cfg.pretrained_path, cfg.feat_backend,
                      cfg.feature, cfg.config)
    check_contract(s.feature, cfg, 'the AudioSet weights')
    results = predict_files(expand_inputs(cfg.wav), s.feature, s.score,
                            s.windowing(cfg.window_seconds))
    return print_predictions(results, s.labels, cfg.top_k)


if __name__ == '__main__':
    run(main)
