from .classifier import BACKBONES, SoundClassifier, build_classifier
from .panns import CNN6, CNN10, CNN14, cnn6, cnn10, cnn14

__all__ = ['SoundClassifier', 'build_classifier', 'BACKBONES', 'CNN14',
           'CNN10', 'CNN6', 'cnn14', 'cnn10', 'cnn6']
