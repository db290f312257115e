"""The classifier and its PANNs backbones. The layers import Paddle, so
they load on first use: importing the package (for :class:`ModelConfig`)
stays free of Paddle."""
import importlib
from dataclasses import dataclass
from typing import Optional


@dataclass
class ModelConfig:
    """The ``model:`` section: what the trainer builds."""
    backbone: str = 'cnn14'
    pretrained: bool = True
    pretrained_path: Optional[str] = None
    init_checkpoint: Optional[str] = None  # backbone of a checkpoint trained here
    dropout: float = 0.1
    head_hidden: int = 0  # units of a hidden layer in the head; 0: linear


_HOMES = {
    'SoundClassifier': '.classifier', 'build_classifier': '.classifier',
    'load_classifier': '.classifier', 'init_backbone': '.classifier', 'CNN6': '.panns', 'CNN10': '.panns',
    'CNN14': '.panns', 'cnn6': '.panns', 'cnn10': '.panns', 'cnn14': '.panns',
    'BACKBONES': '.panns.registry', 'get_backbone': '.panns.registry',
}

__all__ = ['ModelConfig', *_HOMES]


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    return getattr(importlib.import_module(_HOMES[name], __name__), name)
