"""A classification head on top of a PANNs embedding."""
import paddle.nn as nn

from .panns import cnn6, cnn10, cnn14

BACKBONES = {'cnn14': cnn14, 'cnn10': cnn10, 'cnn6': cnn6}


class SoundClassifier(nn.Layer):
    """``[batch, frames, n_mels]`` log-mel -> ``[batch, num_class]`` logits.

    ``multi_label``: a clip may belong to several classes, so
    :meth:`probabilities` scores each class on its own (sigmoid) instead of
    sharing one distribution among them (softmax).
    """

    def __init__(self, backbone, num_class, dropout=0.1, multi_label=False):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(backbone.emb_size, num_class)
        self.multi_label = multi_label

    def forward(self, x):
        x = self.backbone(x.unsqueeze(1))
        return self.fc(self.dropout(x))

    def probabilities(self, x):
        if self.multi_label:
            return nn.functional.sigmoid(self(x))
        return nn.functional.softmax(self(x), axis=-1)


def build_classifier(backbone, num_class, dropout=0.1, pretrained=False,
                     pretrained_path=None, multi_label=False):
    if backbone not in BACKBONES:
        raise ValueError(f'unknown backbone {backbone!r}; choose one of '
                         f'{sorted(BACKBONES)}')
    net = BACKBONES[backbone](pretrained=pretrained, extract_embedding=True,
                              pretrained_path=pretrained_path)
    return SoundClassifier(net, num_class=num_class, dropout=dropout,
                           multi_label=multi_label)
