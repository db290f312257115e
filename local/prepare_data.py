#!/usr/bin/env python3
"""Stage 0: make the dataset a config points at available.

``dataset: synthetic`` generates the demo set into ``data_dir`` (once);
``dataset: esc50`` uses ``data_dir`` if given, else downloads ESC-50
(md5-verified) into ``data_home``.
"""
from paddlespeech.cls.config import ConfigArgumentParser
from paddlespeech.cls.datasets import dataset_root, prepare_esc50, read_meta
from paddlespeech.cls.datasets.synthetic import generate
from paddlespeech.cls.runtime import run


def get_parser():
    p = ConfigArgumentParser(description=__doc__)
    p.add('--data_dir', help='dataset root in ESC-50 layout')
    p.add('--data_home', help='where ESC-50 is downloaded and extracted '
          'when data_dir is not set')
    return p


def main(argv):
    cfg = get_parser().parse_config(argv)
    root = dataset_root(cfg)
    if cfg.dataset == 'synthetic':
        if not (root / 'meta' / 'esc50.csv').is_file():
            generate(root, **cfg.synthetic)
    elif cfg.data_dir is None:
        root = prepare_esc50(cfg.data_home)
    rows, labels = read_meta(root)
    clips = len({r['filename'] for r in rows})  # multi-label: several rows
    print(f'dataset ready: {root} ({clips} clips, {len(labels)} classes)')
    return 0


if __name__ == '__main__':
    run(main)
