"""Tag audio files with the 527 AudioSet classes of a pretrained PANNs model.

Scores are independent sigmoid probabilities (AudioSet is multi-label), so
they do not sum to one. Without --checkpoint the AudioSet weights are
downloaded once into the cache ($PADDLESPEECH_CLS_HOME, default
~/.cache/paddlespeech/cls); a converted original checkpoint (see
``python -m paddlespeech.cls.exps.panns.convert``) can be given instead.
"""
from paddlespeech.cls.runtime import prepare_process, run

prepare_process()

from paddlespeech.cls import prediction
from paddlespeech.cls.config import prediction_parser
from paddlespeech.cls.models.panns.registry import BACKBONES
from paddlespeech.cls.opener import open_model
from paddlespeech.cls.scoring import check_tagger_feature


def get_parser():
    p = prediction_parser(__doc__)
    p.add('--arch', key='tag_arch', choices=sorted(BACKBONES),
          help='PANNs architecture')
    p.add('--checkpoint', key='pretrained_path',
          help='AudioSet weights (.pdparams, e.g. written by the converter) '
          'instead of the pretrained download')
    p.add('--pretrained_path', help='the same as --checkpoint')
    return p


def open_for(cfg):
    check_tagger_feature(cfg.feature, cfg.config)
    return open_model(arch=cfg.tag_arch, pretrained=cfg.pretrained_path,
                      device=cfg.device, cpu_threads=cfg.cpu_threads,
                      feat_backend=cfg.feat_backend)


def main(argv):
    return prediction.main(argv, get_parser, open_for)


if __name__ == '__main__':
    run(main)
