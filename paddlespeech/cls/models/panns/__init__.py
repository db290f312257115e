from .panns import CNN6, CNN10, CNN14
from .registry import cnn6, cnn10, cnn14

__all__ = ['CNN14', 'CNN10', 'CNN6', 'cnn14', 'cnn10', 'cnn6']
