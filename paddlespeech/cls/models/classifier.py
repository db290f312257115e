"""A classification head on top of a PANNs embedding, built new or from a
checkpoint."""
import paddle.nn as nn

from ..checkpoint import CheckpointError, read_state
from ..datasets import ESC50_LABELS, read_label_file
from ..features import FeatureConfig
from ..logs import get_logger
from ..task import Task
from .panns.registry import BACKBONES, get_backbone
from .panns.weights import describe, fit_problems

log = get_logger(__name__)


class SoundClassifier(nn.Layer):
    """``[batch, frames, n_mels]`` log-mel -> ``[batch, num_class]`` logits.

    ``task`` (:class:`~paddlespeech.cls.task.Task`) turns the logits into
    scores in :meth:`probabilities`: softmax, or an independent sigmoid per
    class for multi-label data. The head is one linear layer, or with
    ``hidden`` units a ReLU layer and a linear one.
    """

    def __init__(self, backbone, num_class, dropout=0.1, task=None,
                 hidden=0):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(backbone.emb_size, num_class) if not hidden \
            else nn.Sequential(nn.Linear(backbone.emb_size, hidden),
                               nn.ReLU(), nn.Dropout(dropout),
                               nn.Linear(hidden, num_class))
        self.num_class = num_class
        self.task = task or Task()

    def forward(self, x):
        return self.head(self.backbone(x.unsqueeze(1)))

    def head(self, embedding):
        """Logits of backbone embeddings ``[batch, emb_size]``."""
        return self.fc(self.dropout(embedding))

    def probabilities(self, x):
        return self.task.probabilities(self(x))

    def embed(self, x):
        """The backbone's embedding of ``[batch, frames, n_mels]`` log-mel
        (``[batch, emb_size]``): what the head reads, without dropout."""
        return self.backbone.embed(x.unsqueeze(1))


def build_classifier(backbone, num_class, dropout=0.1, pretrained=False,
                     pretrained_path=None, task=None, hidden=0):
    """A :class:`SoundClassifier` on the registry's ``backbone``."""
    net = get_backbone(backbone)(pretrained=pretrained,
                                 extract_embedding=True,
                                 pretrained_path=pretrained_path)
    return SoundClassifier(net, num_class=num_class, dropout=dropout,
                           task=task, hidden=hidden)


def load_classifier(checkpoint, expected_backbone=None, label_file=None):
    """The classifier of a ``train.py`` checkpoint in eval mode, its label
    list and its feature config; refused unless every tensor fits. A plain
    state dict (upstream PaddleSpeech's checkpoints) is read as
    :func:`upstream_meta` describes; ``label_file`` names its classes."""
    state, meta = read_state(checkpoint)
    if meta is None:
        meta = upstream_meta(state, checkpoint, label_file)
    backbone = meta['backbone']
    if expected_backbone and expected_backbone != backbone:
        raise CheckpointError(f'{checkpoint} holds a {backbone} model, not '
                              f'{expected_backbone}: drop --backbone or pass '
                              f'a {expected_backbone} checkpoint')
    model = build_classifier(backbone, meta['num_class'],
                             meta.get('dropout', 0.1),
                             task=Task.from_meta(meta),
                             hidden=meta.get('head_hidden', 0))
    problems = fit_problems(model.state_dict(), state)
    if problems:
        raise CheckpointError(f'{checkpoint} does not fit the {backbone} '
                              f'classifier with {meta["num_class"]} classes '
                              f'its metadata describes: {describe(problems)}')
    model.set_state_dict(state)
    model.eval()
    model.meta = meta
    return model, meta['label_list'], FeatureConfig.from_dict(meta['feature'])


def init_backbone(model, checkpoint, feature):
    """Load the backbone of ``checkpoint`` (one trained here, any label
    set) into ``model``; its head is left as built. Refused unless the
    checkpoint's backbone and ``feature`` settings are ``model``'s."""
    state, meta = read_state(checkpoint)
    if meta is None:
        raise CheckpointError(f'{checkpoint} has no metadata: pass a '
                              f'checkpoint written by train.py')
    want = type(model.backbone).__name__.lower()
    if meta['backbone'] != want:
        raise CheckpointError(f'{checkpoint} holds a {meta["backbone"]} '
                              f'backbone, this run trains {want}: set '
                              f'backbone: {meta["backbone"]}')
    bad = feature.mismatches(**meta['feature'])
    if bad:
        raise CheckpointError(f'{checkpoint} was trained with other feature '
                              f'settings ({", ".join(bad)}): use its '
                              f'feature section in this run\'s config')
    body = {k.split('.', 1)[1]: v for k, v in state.items()
            if k.startswith('backbone.')}
    problems = fit_problems(model.backbone.state_dict(), body)
    if problems:
        raise CheckpointError(f'{checkpoint}: its backbone does not fit: '
                              f'{describe(problems)}')
    model.backbone.set_state_dict(body)


def upstream_meta(state, source, label_file=None):
    """What a classifier state dict without ``_meta`` (written by upstream
    PaddleSpeech's ``train.py``; same tensor names) needs: the backbone that
    its ``backbone.*`` tensors fit, the class count of its head, the label
    names of ``label_file`` (else ESC-50's, for a 50-class head), the
    default front end (upstream's feature settings) and one class per clip.
    Says on stderr what it assumed."""
    body = {k.split('.', 1)[1]: v for k, v in state.items()
            if k.startswith('backbone.')}
    if 'fc.weight' not in state or not body:
        raise CheckpointError(
            f'{source}: no _meta entry and no classifier tensors (backbone.*, '
            f'fc.weight): not a checkpoint of a classifier (backbone-only '
            f'weights go to --pretrained_path)')
    fits = [b.name for b in BACKBONES.values()
            if not fit_problems(b.skeleton().state_dict(), body)]
    if not fits:
        raise CheckpointError(f'{source}: its backbone.* tensors fit none of '
                              f'{sorted(BACKBONES)}')
    num_class = state['fc.weight'].shape[1]
    if label_file:
        labels, named = read_label_file(label_file), f'from {label_file}'
    elif num_class == len(ESC50_LABELS):
        labels, named = list(ESC50_LABELS), 'as ESC-50\'s classes'
    else:
        raise CheckpointError(f'{source} has no _meta entry and {num_class} '
                              f'classes: pass --label_file (one class name '
                              f'per line, in class order)')
    if len(labels) != num_class:
        raise CheckpointError(f'{label_file} names {len(labels)} classes, but '
                              f'{source} has {num_class}')
    log.warning(f'note: {source} has no _meta entry (an upstream '
                f'PaddleSpeech checkpoint?): read as {fits[0]} (from its '
                f'tensor shapes), {num_class} classes named {named}, the '
                f'default front end')
    return {'backbone': fits[0], 'num_class': num_class,
            'label_list': labels, 'dropout': 0.1,
            'feature': FeatureConfig().to_dict()}
