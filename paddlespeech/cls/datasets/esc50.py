"""ESC-50 and any dataset in its layout.

Layout: ``<root>/audio/*.wav`` and ``<root>/meta/esc50.csv`` with at least
the columns ``filename, fold, target, category``. Label names come from
the csv (``target -> category``), so ``num_class`` follows the data; on
ESC-50 itself they are PaddleSpeech's names (``ESC50_LABELS``, as
``paddleaudio.datasets.ESC50.label_list``), so predictions print the same
names as upstream's recipe.
A clip with several labels is listed on several rows (same filename and
fold, one target each); one such clip makes the dataset multi-label.
"""
import csv
from pathlib import Path

from ..download import download, extract
from .clips import ClipTable, DatasetError, FoldDataset

ESC50_URL = 'https://paddleaudio.bj.bcebos.com/datasets/ESC-50-master.zip'
ESC50_MD5 = '7771e4b9d86d0945acce719c7a59305a'
ESC50_GITHUB = 'https://github.com/karolpiczak/ESC-50/archive/master.zip'
REQUIRED_COLUMNS = ('filename', 'fold', 'target', 'category')
# ESC-50's categories in target order, and upstream's names for them.
ESC50_CATEGORIES = (
    'dog rooster pig cow frog cat hen insects sheep crow rain sea_waves '
    'crackling_fire crickets chirping_birds water_drops wind pouring_water '
    'toilet_flush thunderstorm crying_baby sneezing clapping breathing '
    'coughing footsteps laughing brushing_teeth snoring drinking_sipping '
    'door_wood_knock mouse_click keyboard_typing door_wood_creaks '
    'can_opening washing_machine vacuum_cleaner clock_alarm clock_tick '
    'glass_breaking helicopter chainsaw siren car_horn engine train '
    'church_bells airplane fireworks hand_saw').split()
UPSTREAM_NAMES = {7: 'Insects (flying)', 29: 'Drinking, sipping',
                  30: 'Door knock', 33: 'Door, wood creaks'}


def display_name(category):
    """``clock_tick`` -> ``Clock tick`` (the seed's output style)."""
    return category.replace('_', ' ').strip().capitalize()


ESC50_LABELS = [UPSTREAM_NAMES.get(i, display_name(c))
                for i, c in enumerate(ESC50_CATEGORIES)]


def label_names(categories):
    """Display names of the csv's categories (in target order): upstream's
    names when they are ESC-50's own categories."""
    categories = list(categories)
    if categories == ESC50_CATEGORIES:
        return list(ESC50_LABELS)
    return [display_name(c) for c in categories]


def read_meta(root):
    """Rows of ``meta/esc50.csv`` and the label names indexed by target."""
    meta = Path(root) / 'meta' / 'esc50.csv'
    if not meta.is_file():
        raise DatasetError(
            f'{meta} not found: a dataset in ESC-50 layout needs '
            f'audio/*.wav and meta/esc50.csv (run stage 0, or set data_dir; '
            f'a folder per class or a manifest needs dataset: auto)')
    with open(meta, newline='', encoding='utf-8') as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in REQUIRED_COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise DatasetError(f'{meta}: needs columns {list(REQUIRED_COLUMNS)}'
                           f' and at least one row (missing {missing})')
    names, fold_of = {}, {}
    for r in rows:
        names.setdefault(int(r['target']), r['category'])
        fold = fold_of.setdefault(r['filename'], r['fold'])
        if int(fold) != int(r['fold']):
            raise DatasetError(
                f'{meta}: {r["filename"]} is listed in fold {fold} and in '
                f'fold {r["fold"]}; a clip belongs to one fold: give all its '
                f'rows (one per label) the same fold')
    if sorted(names) != list(range(len(names))):
        raise DatasetError(f'{meta}: targets must be 0..N-1, got '
                           f'{sorted(names)}')
    return rows, label_names(names[i] for i in range(len(names)))


def clip_labels(rows):
    """``{filename: (fold, [targets])}`` in csv order: a clip listed on
    several rows has several targets."""
    clips = {}
    for r in rows:
        _, targets = clips.setdefault(r['filename'], (int(r['fold']), []))
        if int(r['target']) not in targets:
            targets.append(int(r['target']))
    return clips


def esc50_table(root):
    """The :class:`.clips.ClipTable` of a dataset in ESC-50 layout."""
    root = Path(root)
    rows, label_list = read_meta(root)
    clips = clip_labels(rows)
    return ClipTable(root, [root / 'audio' / name for name in clips],
                     [fold for fold, _ in clips.values()],
                     [targets for _, targets in clips.values()], label_list,
                     root / 'meta' / 'esc50.csv')


class ESC50Dataset(FoldDataset):
    """A split of a dataset in ESC-50 layout (:class:`.clips.FoldDataset`)."""

    def __init__(self, root, mode='train', split=1, feature_config=None,
                 extractor=None, val_fraction=0.0, seed=0):
        super().__init__(esc50_table(root), mode, split, feature_config,
                         extractor, val_fraction, seed)


def dataset_root(data):
    """The dataset the ``data:`` section points at: ``data_dir``, else the
    ESC-50 download."""
    if data.data_dir:
        return Path(data.data_dir)
    return Path(data.data_home) / 'ESC-50-master'


def prepare_esc50(data_home):
    """Download (md5-verified) and extract ESC-50 into ``data_home``."""
    data_home = Path(data_home)
    root = data_home / 'ESC-50-master'
    if (root / 'meta' / 'esc50.csv').is_file():
        return root
    archive = data_home / 'ESC-50-master.zip'
    hint = (f'Offline? Download {ESC50_URL} (md5 {ESC50_MD5}) on another '
            f'machine and put it at {archive}, or extract that archive or '
            f'{ESC50_GITHUB} so that {root}/meta/esc50.csv exists, or set '
            f'data_dir in the config to an existing copy.')
    download(ESC50_URL, archive, md5=ESC50_MD5, hint=hint)
    extract(archive, data_home)
    return root
