from .esc50 import ESC50Dataset, dataset_root, prepare_esc50

__all__ = ['ESC50Dataset', 'dataset_root', 'prepare_esc50']
