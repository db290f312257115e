"""Fine-tune a PANNs backbone on a dataset: ESC-50 layout, a folder per
class, or a manifest (docs/data.md).

Single process:  python train.py --config conf/panns.yaml
Data parallel:   python -m paddle.distributed.launch train.py ...

Ctrl-C (or SIGTERM) in a single-process run saves epoch_N_step_S/ after
the current step; --resume continues from the furthest checkpoint (model,
optimizer, LR schedule, position in the epoch, random state, best dev
score and early-stopping count), also after a crash or kill.

Besides epoch_N/ (only the last few with --keep_checkpoint_max), the run
keeps best/ (highest dev accuracy, used by the later stages), optionally
avg_N/ (--average_last), and draws curves.png from metrics.jsonl at the end.

Multi-label data (a clip listed on several rows of meta/esc50.csv or of a
manifest) trains
with a sigmoid (binary cross-entropy) loss, and best/ and early stopping
follow the dev mAP instead of the accuracy.
"""
from paddlespeech.cls.runtime import prepare_process, run

prepare_process()

from paddlespeech.cls.config import ConfigArgumentParser, parse_bool
from paddlespeech.cls.datasets import LAYOUTS
from paddlespeech.cls.features import FEAT_BACKENDS
from paddlespeech.cls.models import BACKBONES
from paddlespeech.cls.optim import AMP_MODES, LR_SCHEDULES
from paddlespeech.cls.trainer import Trainer

OPTIM_FLAGS = [
    ('epochs', int, 'number of training epochs'),
    ('learning_rate', float, 'Adam learning rate'),
    ('warmup_epochs', float, 'linear warm-up from 0 over this many epochs'),
    ('lr_step_epochs', float, 'step schedule: multiply the rate by lr_gamma '
     'every N epochs (counted after the warm-up)'),
    ('lr_gamma', float, 'step schedule: decay factor'),
    ('freeze_backbone_epochs', int, 'train only the classifier head '
     '(backbone weights and BatchNorm statistics fixed) for the first N '
     'epochs'),
    ('head_only', parse_bool, 'train only the classifier head, on '
     'embeddings the frozen backbone computes once per clip and caches '
     'under checkpoint_dir/embeddings/ (true/false): seconds per epoch '
     'instead of minutes; the checkpoint holds backbone and head as usual'),
    ('embed_augment', int, 'with --head_only: also embed this many '
     'augmented copies of each training window (the augment: section, '
     'mixup aside), each cached once'),
    ('head_hidden', int, 'units of one hidden (ReLU) layer in the '
     'classifier head (0: a linear head)'),
]
AUGMENT_FLAGS = [
    ('mixup_alpha', float, 'mixup of log-mel clips and targets with '
     'Beta(alpha, alpha) weights (0/unset: off)'),
    ('spec_time_masks', int, 'SpecAugment: time masks per clip'),
    ('spec_time_width', int, 'SpecAugment: widest time mask (frames)'),
    ('spec_freq_masks', int, 'SpecAugment: frequency masks per clip'),
    ('spec_freq_width', int, 'SpecAugment: widest frequency mask (mel bins)'),
    ('time_shift_frames', int, 'random time shift of up to N frames'),
    ('gain_db', float, 'random gain of up to +-N dB'),
]


def get_parser():
    p = ConfigArgumentParser(description=__doc__)
    add = p.add
    # data
    add('--data_dir', help='dataset: ESC-50 layout (audio/, '
        'meta/esc50.csv), a folder per class, or a manifest .csv/.tsv (or '
        'a folder holding metadata.csv)')
    add('--dataset', choices=LAYOUTS + ('synthetic',),
        help='layout of data_dir (auto: detected from what is there)')
    add('--split', type=int, help='dev fold; the other folds train')
    add('--num_folds', type=int, help='stratified folds assigned to data '
        'without folds (kept in a folds file for every later run)')
    add('--folds_file', help='where assigned folds are kept (default: '
        '<data_dir>/.folds.csv, <manifest stem>.folds.csv beside a '
        'manifest, or <checkpoint_dir>/folds.csv when data_dir '
        'is read-only)')
    add('--clip_seconds', type=float,
        help='train on random crops of this many seconds (shorter clips '
        'padded with silence) and score dev clips in windows of this '
        'length, averaged (unset: whole clips)')
    add('--balanced_sampling', type=parse_bool, nargs='?', const=True,
        help='draw training batches class-balanced (rare classes repeat)')
    add('--val_fraction', type=float,
        help='hold out this stratified share of the training folds and '
        'choose best/ (and early stopping) on it instead of the dev fold '
        '(0: the dev fold)')
    add('--skip_bad_files', type=parse_bool, nargs='?', const=True,
        help='train without unreadable clips (they are listed) instead of '
        'refusing to start')
    add('--feat_backend', choices=FEAT_BACKENDS,
        help='numpy: per clip in the data loader, features cached after the '
        'first epoch; paddle: batched on the model device')
    add('--batch_size', type=int, help='clips per step (per process)')
    add('--num_workers', type=int,
        help='data loader worker processes (0: load in the main process)')
    # model
    add('--backbone', choices=sorted(BACKBONES), help='PANNs backbone')
    add('--pretrained', type=parse_bool,
        help='start from the AudioSet weights (true/false)')
    add('--pretrained_path', help='local .pdparams of the backbone instead '
        'of the download')
    add('--init_checkpoint', help='start the backbone from a checkpoint '
        'trained here (any classes: its head is dropped) instead of the '
        'AudioSet weights; its feature settings must be this run\'s')
    # optimisation
    for flag, kind, what in OPTIM_FLAGS:
        add(f'--{flag}', type=kind, help=what)
    add('--lr_schedule', choices=LR_SCHEDULES,
        help='learning rate over the run (stepped every batch): constant, '
        'cosine to 0, or step decay')
    add('--amp', choices=AMP_MODES,
        help='GPU automatic mixed precision (paddle.amp O1); refused on CPU')
    for flag, kind, what in AUGMENT_FLAGS:
        add(f'--{flag}', key=f'augment.{flag}', type=kind,
            metavar=flag.upper(), help=what)
    # evaluation and checkpoints
    add('--checkpoint_dir', help='where epoch_N/ checkpoints and '
        'metrics.jsonl are written')
    add('--save_freq', type=int,
        help='evaluate on the dev fold and save every N epochs')
    add('--early_stop_patience', type=int,
        help='stop after N evaluations without a higher dev accuracy (dev '
        'mAP on multi-label data) (0: off)')
    add('--average_last', type=int,
        help='at the end, average the last N epoch checkpoints into avg_N/ '
        '(0: off)')
    add('--keep_checkpoint_max', type=int,
        help='after each save, delete all but the last N epoch_N/ '
        'checkpoints, oldest first (best/ and avg_N/ always stay); at least '
        'average_last are kept, since the average needs them (0: keep all)')
    add('--resume', action='store_true',
        help='continue from the furthest checkpoint in checkpoint_dir '
        '(epoch_N or the epoch_N_step_S of an interrupted run)')
    # runtime and logging
    add('--device', help='cpu, gpu or gpu:N (default: gpu if available)')
    add('--cpu_threads', type=int,
        help='CPU threads per process (default: cores / processes)')
    add('--seed', type=int, help='random seed')
    add('--log_freq', type=int, help='log training metrics every N steps')
    add('--visualdl_dir', help='write VisualDL scalars here (needs pip '
        'install visualdl)')
    return p


def main(argv):
    cfg = get_parser().parse_config(argv)
    return Trainer(cfg).fit()


if __name__ == '__main__':
    run(main)
