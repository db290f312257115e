from .clips import ClipDataset, DatasetError, check_readable, collate
from .esc50 import ESC50Dataset, dataset_root, prepare_esc50, read_meta

__all__ = ['ClipDataset', 'DatasetError', 'check_readable', 'collate',
           'ESC50Dataset', 'dataset_root', 'prepare_esc50', 'read_meta']
