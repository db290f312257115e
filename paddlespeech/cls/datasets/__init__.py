from .clips import (ClipDataset, DatasetError, check_readable, collate,
                    read_label_file)
from .esc50 import (ESC50_LABELS, ESC50Dataset, dataset_root, prepare_esc50,
                    read_meta)

__all__ = ['ClipDataset', 'DatasetError', 'check_readable', 'collate',
           'read_label_file', 'ESC50_LABELS', 'ESC50Dataset', 'dataset_root',
           'prepare_esc50', 'read_meta']
