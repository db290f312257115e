"""Checkpoint layout and I/O.

``<checkpoint_dir>/epoch_<N>/model.pdparams`` holds the classifier's
weights plus a ``_meta`` entry (backbone, labels, feature configuration),
so a single copied file is enough to predict or export; ``model.pdopt``
holds the optimizer and training state for resuming. Every file is written
to a temporary name and renamed, so an interrupted save leaves the previous
checkpoint intact.
"""
import json
import os
import re
from pathlib import Path

import paddle

from .errors import UserError
from .features import FeatureConfig
from .models import build_classifier

META_KEY = '_meta'
_EPOCH_DIR = re.compile(r'^epoch_(\d+)$')


class CheckpointError(UserError):
    pass


def atomic_save(obj, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.tmp')
    paddle.save(obj, str(tmp))
    os.replace(tmp, path)


def save_checkpoint(checkpoint_dir, epoch, model, meta, optimizer=None,
                    train_state=None):
    """Write ``epoch_<epoch>/`` and return its path."""
    out = Path(checkpoint_dir) / f'epoch_{epoch}'
    if optimizer is not None:
        atomic_save({'optimizer': optimizer.state_dict(),
                     'train_state': train_state or {}}, out / 'model.pdopt')
    state = dict(model.state_dict())
    state[META_KEY] = json.dumps(meta)
    atomic_save(state, out / 'model.pdparams')
    return out


def load_checkpoint(path):
    """``(state_dict, meta)`` of a ``model.pdparams`` file (or its directory).

    Only load checkpoints you trust: ``paddle.load`` unpickles the file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / 'model.pdparams'
    if not path.is_file():
        raise CheckpointError(
            f'checkpoint {path} not found (train first with ./run.sh 1, or '
            f'pass --checkpoint <checkpoint_dir>/epoch_N/model.pdparams)')
    try:
        state = paddle.load(str(path))
    except Exception as e:
        raise CheckpointError(f'{path}: not a Paddle checkpoint ({e})') from e
    if not isinstance(state, dict) or META_KEY not in state:
        raise CheckpointError(
            f'{path}: no {META_KEY} entry; this is not a checkpoint written '
            f'by train.py (backbone-only weights go to --pretrained_path)')
    meta = json.loads(state.pop(META_KEY))
    return state, meta


def load_classifier(checkpoint, backbone=None):
    """Classifier in eval mode, its label list and its feature config."""
    state, meta = load_checkpoint(checkpoint)
    if backbone and backbone != meta['backbone']:
        raise CheckpointError(f'{checkpoint} holds a {meta["backbone"]} '
                              f'model, not {backbone}: drop --backbone or '
                              f'pass a {backbone} checkpoint')
    model = build_classifier(meta['backbone'], meta['num_class'],
                             meta.get('dropout', 0.1))
    missing, unexpected = model.set_state_dict(state)
    if missing or unexpected:
        raise CheckpointError(f'{checkpoint} does not fit a {meta["backbone"]}'
                              f' classifier with {meta["num_class"]} classes '
                              f'(missing {missing[:3]}, unexpected '
                              f'{unexpected[:3]})')
    model.eval()
    return model, meta['label_list'], FeatureConfig.from_dict(meta['feature'])


def latest_checkpoint(checkpoint_dir):
    """The newest ``epoch_<N>`` directory holding a model, or None."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return None
    epochs = [(int(m.group(1)), d) for d in root.iterdir()
              if (m := _EPOCH_DIR.match(d.name)) and
              (d / 'model.pdparams').is_file()]
    return max(epochs)[1] if epochs else None
