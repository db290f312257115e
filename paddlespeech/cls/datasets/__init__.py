from .clips import (ClipDataset, ClipTable, ClipWindows, DatasetError,
                    FoldDataset, check_readable, collate, print_class_counts,
                    read_label_file)
from .esc50 import (ESC50_LABELS, ESC50Dataset, dataset_root, prepare_esc50,
                    read_meta)
from .layouts import LAYOUTS, DataConfig, load_table

# .loaders (GuardedLoader, window_loader) and .sampling (the batch
# samplers) import Paddle: import them from their modules, so that
# importing this package stays free of Paddle.

__all__ = ['ClipDataset', 'ClipTable', 'ClipWindows', 'DatasetError',
           'FoldDataset', 'check_readable', 'collate', 'read_label_file',
           'ESC50_LABELS', 'ESC50Dataset', 'dataset_root', 'prepare_esc50',
           'read_meta', 'LAYOUTS', 'DataConfig', 'load_table',
           'print_class_counts']
