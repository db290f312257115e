"""A classification head on top of a PANNs embedding, built new or from a
checkpoint."""
import paddle.nn as nn

from ..checkpoint import CheckpointError, load_checkpoint
from ..features import FeatureConfig
from ..task import Task
from .panns.registry import get_backbone
from .panns.weights import describe, fit_problems


class SoundClassifier(nn.Layer):
    """``[batch, frames, n_mels]`` log-mel -> ``[batch, num_class]`` logits.

    ``task`` (:class:`~paddlespeech.cls.task.Task`) turns the logits into
    scores in :meth:`probabilities`: softmax, or an independent sigmoid per
    class for multi-label data.
    """

    def __init__(self, backbone, num_class, dropout=0.1, task=None):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(backbone.emb_size, num_class)
        self.task = task or Task()

    @property
    def num_class(self):
        return self.fc.weight.shape[1]

    def forward(self, x):
        x = self.backbone(x.unsqueeze(1))
        return self.fc(self.dropout(x))

    def probabilities(self, x):
        return self.task.probabilities(self(x))


def build_classifier(backbone, num_class, dropout=0.1, pretrained=False,
                     pretrained_path=None, task=None):
    """A :class:`SoundClassifier` on the registry's ``backbone``."""
    net = get_backbone(backbone)(pretrained=pretrained,
                                 extract_embedding=True,
                                 pretrained_path=pretrained_path)
    return SoundClassifier(net, num_class=num_class, dropout=dropout,
                           task=task)


def load_classifier(checkpoint, expected_backbone=None):
    """The classifier of a ``train.py`` checkpoint in eval mode, its label
    list and its feature config; refused unless every tensor fits."""
    state, meta = load_checkpoint(checkpoint)
    backbone = meta['backbone']
    if expected_backbone and expected_backbone != backbone:
        raise CheckpointError(f'{checkpoint} holds a {backbone} model, not '
                              f'{expected_backbone}: drop --backbone or pass '
                              f'a {expected_backbone} checkpoint')
    model = build_classifier(backbone, meta['num_class'],
                             meta.get('dropout', 0.1),
                             task=Task.from_meta(meta))
    problems = fit_problems(model.state_dict(), state)
    if problems:
        raise CheckpointError(f'{checkpoint} does not fit the {backbone} '
                              f'classifier with {meta["num_class"]} classes '
                              f'its metadata describes: {describe(problems)}')
    model.set_state_dict(state)
    model.eval()
    return model, meta['label_list'], FeatureConfig.from_dict(meta['feature'])
