"""The one backbone registry: name -> model class, embedding size and where
its AudioSet weights come from (two sources, tried in this order:
PaddleSpeech's archive, upstream recipe's plain file); and the factories
built on it.

Adding a backbone means one :class:`Backbone` entry here: the training
script's ``--backbone`` choices, the tagger's ``--arch``, the converter and
the weight download all read :data:`BACKBONES`.
"""
import csv
from dataclasses import dataclass
from pathlib import Path

import paddle

from ...errors import UserError
from . import weights
from .panns import CNN6, CNN10, CNN14

AUDIOSET_LABELS_CSV = Path(__file__).resolve().parent / 'assets' / \
    'class_labels_indices.csv'


@dataclass(frozen=True)
class Backbone:
    name: str
    cls: type
    archive: str  # PaddleSpeech's md5-checked weight archive
    archive_md5: str
    pdparams: str  # the plain weights upstream's recipe loads (no md5)
    original: str  # the released PyTorch checkpoint (Kong et al., zenodo)

    @property
    def emb_size(self):
        return self.cls.channels[-1]

    def skeleton(self):
        """The model with its layers but no allocated weights: names and
        shapes, for checking a state dict before it is loaded."""
        with paddle.LazyGuard():
            return self.cls()

    def __call__(self, pretrained=False, extract_embedding=True,
                 pretrained_path=None):
        """A new model; ``pretrained`` loads the AudioSet weights (from
        ``pretrained_path``, else the cache or the download)."""
        model = self.cls(extract_embedding=extract_embedding)
        if pretrained:
            model.set_state_dict(weights.load_pretrained(self,
                                                         pretrained_path))
        return model


BACKBONES = {b.name: b for b in (
    Backbone('cnn14', CNN14,
             'https://paddlespeech.bj.bcebos.com/cls/panns_cnn14.tar.gz',
             'e3b9b5614a1595001161d0ab95edee97',
             'https://bj.bcebos.com/paddleaudio/models/panns_cnn14.pdparams',
             'Cnn14_mAP=0.431.pth'),
    Backbone('cnn10', CNN10,
             'https://paddlespeech.bj.bcebos.com/cls/panns_cnn10.tar.gz',
             'cb8427b22176cc2116367d14847f5413',
             'https://bj.bcebos.com/paddleaudio/models/panns_cnn10.pdparams',
             'Cnn10_mAP=0.380.pth'),
    Backbone('cnn6', CNN6,
             'https://paddlespeech.bj.bcebos.com/cls/panns_cnn6.tar.gz',
             '4cf09194a95df024fd12f84712cf0f9c',
             'https://bj.bcebos.com/paddleaudio/models/panns_cnn6.pdparams',
             'Cnn6_mAP=0.343.pth'),
)}


def get_backbone(name):
    if name not in BACKBONES:
        raise UserError(f'unknown backbone {name!r}; choose one of '
                        f'{sorted(BACKBONES)}')
    return BACKBONES[name]


def cnn14(pretrained=False, extract_embedding=True, pretrained_path=None):
    return BACKBONES['cnn14'](pretrained, extract_embedding, pretrained_path)


def cnn10(pretrained=False, extract_embedding=True, pretrained_path=None):
    return BACKBONES['cnn10'](pretrained, extract_embedding, pretrained_path)


def cnn6(pretrained=False, extract_embedding=True, pretrained_path=None):
    return BACKBONES['cnn6'](pretrained, extract_embedding, pretrained_path)


def audioset_labels(path=AUDIOSET_LABELS_CSV):
    """Display names of the 527 AudioSet classes, in model output order."""
    with open(path, newline='', encoding='utf-8') as f:
        rows = sorted(csv.DictReader(f), key=lambda row: int(row['index']))
    return [row['display_name'] for row in rows]


def build_tagger(name, weights_path=None):
    """``name`` with its AudioSet head and weights, in eval mode."""
    model = get_backbone(name)(pretrained=True, extract_embedding=False,
                               pretrained_path=weights_path)
    model.eval()
    return model
