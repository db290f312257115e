from .classifier import (SoundClassifier, build_classifier, init_backbone,
                         load_classifier)
from .panns import CNN6, CNN10, CNN14, cnn6, cnn10, cnn14
from .panns.registry import BACKBONES, get_backbone

__all__ = ['SoundClassifier', 'build_classifier', 'load_classifier',
           'BACKBONES', 'get_backbone', 'CNN14', 'CNN10', 'CNN6', 'cnn14',
           'cnn10', 'cnn6']
