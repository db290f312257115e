"""Tag audio files with the 527 AudioSet classes of a pretrained PANNs model.

Scores are independent sigmoid probabilities (AudioSet is multi-label), so
they do not sum to one. Without --checkpoint the AudioSet weights are
downloaded once into the cache ($PADDLESPEECH_CLS_HOME, default
~/.cache/paddlespeech/cls); a converted original checkpoint (see
``python -m paddlespeech.cls.models.panns.convert``) can be given instead.
"""
import paddlespeech.cls  # noqa: F401  (must precede paddle: MKL setup)

import paddle

from paddlespeech.cls.errors import UserError
from paddlespeech.cls.features import FeatureConfig, FrontEnd
from paddlespeech.cls.models.panns.registry import (BACKBONES,
                                                    audioset_labels,
                                                    build_tagger)
from paddlespeech.cls.prediction import (check_contract, expand_inputs,
                                         predict_files, prediction_parser,
                                         print_predictions, start)
from paddlespeech.cls.runtime import run


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
