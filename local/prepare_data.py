#!/usr/bin/env python3
"""Stage 0: make the dataset a config points at available.

``dataset: synthetic`` generates the demo set into ``data_dir`` (once; the
``synthetic:`` section's ``layout`` picks esc50, folder or manifest);
without ``data_dir`` ESC-50 is downloaded (md5-verified) into
``data_home``. Then the dataset is read as training will read it (layout
detected unless ``dataset`` forces one), and data without folds gets its
stratified folds file, which every later stage reuses.
"""
from paddlespeech.cls.runtime import prepare_process, run

prepare_process()

from paddlespeech.cls.config import ConfigArgumentParser
from paddlespeech.cls.datasets import (DatasetError, LAYOUTS, dataset_root,
                                       load_table, prepare_esc50)
from paddlespeech.cls.datasets.layouts import detect_layout
from paddlespeech.cls.datasets.synthetic import generate


def get_parser():
    p = ConfigArgumentParser(description=__doc__)
    p.add('--data_dir', help='dataset root (ESC-50 layout or a folder per '
          'class) or manifest (.csv/.tsv)')
    p.add('--dataset', choices=LAYOUTS + ('synthetic',),
          help='layout of data_dir (auto: detected)')
    p.add('--data_home', help='where ESC-50 is downloaded and extracted '
          'when data_dir is not set')
    p.add('--num_folds', type=int, help='folds assigned to data without '
          'them')
    return p


def main(argv):
    cfg = get_parser().parse_config(argv)
    root = dataset_root(cfg.data)
    if cfg.dataset == 'synthetic':
        try:
            detect_layout(root)
        except DatasetError:
            generate(root, **cfg.synthetic)
    elif cfg.data_dir is None:
        if cfg.dataset not in ('auto', 'esc50'):
            raise DatasetError(f'dataset {cfg.dataset} needs data_dir: the '
                               f'folder (or manifest) of your clips')
        prepare_esc50(cfg.data_home)
    table = load_table(cfg.data, cfg.train)
    folds = (f', folds from {table.folds_file}' if table.folds_file else '')
    print(f'dataset ready: {table.source} ({len(table.paths)} clips, '
          f'{len(table.label_list)} classes, {len(table.fold_ids)} '
          f'folds{folds})')
    return 0


if __name__ == '__main__':
    run(main)
