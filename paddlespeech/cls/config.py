"""The one configuration object: defaults < ``conf/*.yaml`` < command line.

Every script reads the same object. Keys are flat and named like the flags
that override them (``--epochs`` -> ``epochs``); where a seed flag name
would mean two things, the key says which (``predict.py --backbone`` is
``expected_backbone``, ``deploy/predict.py --batch_size`` is
``infer_batch_size``, ``tag.py --arch`` is ``tag_arch``). Two nested
sections: the front end ``feature`` (see
:class:`paddlespeech.cls.features.FeatureConfig`) and the training-time
``augment`` (see :class:`paddlespeech.cls.augment.Augmenter`), whose keys
are overridden by flags of the same name (``--mixup_alpha``). Unknown keys
are an error, so a typo never silently trains with a default. Importing
this module does not import Paddle.
"""
import argparse
from pathlib import Path
from types import SimpleNamespace

import yaml

from .errors import UserError
from .features import FeatureConfig

DEFAULTS = {
    # data
    'dataset': 'auto',  # auto | esc50 | folder | manifest | synthetic (stage 0 generates it)
    'data_home': './data',
    'data_dir': None,  # ESC-50 layout, a folder per class, or a manifest; None: ESC-50
    'split': 1,  # dev fold; training uses the other folds
    'num_folds': 5,  # folds assigned to data without them
    'folds_file': None,  # None: <data_dir>/.folds.csv (read-only data: <checkpoint_dir>/folds.csv)
    'clip_seconds': None,  # train on random crops this long, score clips in windows; None: whole clips
    'balanced_sampling': False,  # class-balanced training batches
    'val_fraction': 0.0,  # > 0: best/ is chosen on this share of the training folds
    'synthetic': {},  # generator settings when dataset == synthetic
    # model
    'backbone': 'cnn14',
    'pretrained': True,
    'pretrained_path': None,
    'dropout': 0.1,
    # training
    'epochs': 50,
    'learning_rate': 5e-5,
    'lr_schedule': 'constant',  # constant | cosine | step
    'warmup_epochs': 0,
    'lr_step_epochs': 10,  # step: multiply by lr_gamma every N epochs
    'lr_gamma': 0.1,
    'freeze_backbone_epochs': 0,  # train only the head at first
    'early_stop_patience': 0,  # evaluations without a better dev score; 0: off
    'average_last': 0,  # average the last N epoch checkpoints into avg_N/
    'keep_checkpoint_max': 0,  # last N epoch_N/ kept (>= average_last); 0: all
    'amp': 'off',  # off | fp16 | bf16 (GPU only)
    'visualdl_dir': None,  # VisualDL log directory; None: no VisualDL
    'batch_size': 16,  # clips per training step (per process)
    'num_workers': 0,
    'checkpoint_dir': './checkpoint',
    'save_freq': 10,
    'log_freq': 10,
    'seed': 0,
    'skip_bad_files': False,  # train without unreadable clips (listed)
    'resume': False,  # continue from the furthest checkpoint
    # cross-validation (stage 5)
    'folds': None,  # e.g. '1,3'; None: every fold
    'cv_dir': None,  # None: <checkpoint_dir>/../cv
    # runtime
    'device': None,  # None: gpu when available, else cpu
    'cpu_threads': None,  # None: all cores
    'feat_backend': 'numpy',
    # prediction (predict.py, tag.py, deploy/predict.py)
    'wav': None,  # audio files or directories to classify
    'checkpoint': None,  # a train.py checkpoint (predict.py, export)
    'label_file': None,  # class names of a checkpoint/export without metadata
    'expected_backbone': None,  # predict.py --backbone: only checked
    'expected_sample_rate': None,  # --sample_rate: only checked
    'expected_n_mels': None,  # --n_mels: only checked
    'top_k': 1,
    'window_seconds': 10.0,  # long files are classified in windows
    'tag_arch': 'cnn14',  # tag.py --arch: the AudioSet model to tag with
    # export / deploy
    'export_dir': './export',
    'include_frontend': False,  # exported graph takes waveforms
    'infer_batch_size': 16,  # deploy/predict.py --batch_size
    'enable_mkldnn': True,
    'use_tensorrt': False,
    'trt_precision': 'fp32',  # deploy/predict.py --precision (TensorRT)
    # low precision and ONNX (export_model.py, deploy/predict.py)
    'export_format': 'paddle',  # export_model.py --format: paddle | onnx
    'quantize': None,  # int8: post-training static quantisation
    'export_precision': 'fp32',  # export_model.py --precision: fp32 | bf16
    'calib_data': None,  # None: the training folds of data_dir
    'calib_clips': 200,  # calibration clips (classes take turns)
    'check_data': None,  # None: the dev fold of data_dir
    'max_drop': 1.0,  # points of dev score a low-precision export may lose
    'force': False,  # write it even if it loses more
    'backend': None,  # deploy/predict.py --backend; None: what the export holds
    # sound-event detection (detect.py)
    'detect_model_dir': None,  # detect.py --model_dir: an export
    'audioset': False,  # detect.py --pretrained: the AudioSet tagger of tag_arch
    'detect_window_seconds': None,  # None: the model's clip length (else 5 s)
    'hop_seconds': None,  # None: half a window
    'threshold': 0.5,
    'threshold_off': None,  # None: threshold (no hysteresis)
    'min_event_seconds': 0.0,
    'merge_gap_seconds': 0.0,
    'top_k_per_window': 0,  # 0: every class may be active in a window
    'classes': None,  # None: every class
    'detect_dir': None,  # detect.py --output_dir; None: <export_dir>/../detect
    'plot': True,  # detect.py: write <name>.png
    # HTTP service (deploy/serve.py)
    'host': '127.0.0.1',
    'port': 8090,  # as PaddleSpeech's server
    'max_batch_size': 8,  # clips per predictor run
    'max_wait_ms': 10.0,  # wait for a fuller batch, only while requests arrive
    'max_upload_mb': 20.0,  # larger request bodies: 413
    'max_seconds': 600.0,  # longer audio: 413
    'serve_workers': 1,  # serve.py --workers: predictors sharing the queue
    'api_key': None,  # None: $PADDLESPEECH_CLS_API_KEY, else no key
}

# Training-time augmentation (the ``augment:`` section); 0/None: off.
AUGMENT_DEFAULTS = {
    'mixup_alpha': None,  # Beta(alpha, alpha); PANNs transfer: 1.0
    'mixup_per_sample': False,  # one lam per clip (PANNs: per pair)
    'spec_time_masks': 0, 'spec_time_width': 0,  # PANNs: 2 x 64 frames
    'spec_freq_masks': 0, 'spec_freq_width': 0,  # PANNs: 2 x 8 bins
    'spec_fill': 'mean',  # 'mean' (per clip) or a dB value
    'time_shift_frames': 0, 'time_shift_mode': 'shift',  # or 'roll'
    'gain_db': 0,
}


class ConfigError(UserError):
    pass


SECTIONS = ('feature', 'augment')


def load_config(path=None, overrides=None):
    """Merge ``DEFAULTS``, the YAML file at ``path`` and ``overrides``.

    Overrides named ``augment.<key>`` (flags of the augment section) go
    into that section.
    """
    values = dict(DEFAULTS)
    feature, augment = {}, {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f'config file {path} not found')
        data = yaml.safe_load(path.read_text()) or {}
        unknown = sorted(set(data) - set(DEFAULTS) - set(SECTIONS))
        if unknown:
            raise ConfigError(f'{path}: unknown keys {unknown}; known keys: '
                              f'{sorted(DEFAULTS) + list(SECTIONS)}')
        feature = data.pop('feature', None) or {}
        augment = data.pop('augment', None) or {}
        values.update(data)
    for key, value in (overrides or {}).items():
        if key.startswith('augment.'):
            augment[key.split('.', 1)[1]] = value
        elif key in DEFAULTS:
            values[key] = value
        elif key not in ('config', 'debug'):
            raise ValueError(f'override {key!r} has no entry in DEFAULTS')
    if values['amp'] is False:  # YAML 1.1 reads an unquoted off as false
        values['amp'] = 'off'
    if values['detect_dir'] is None:
        values['detect_dir'] = str(Path(values['export_dir']).parent /
                                   'detect')
    values['config'] = str(path) if path is not None else None
    try:
        values['feature'] = FeatureConfig.from_dict(feature)
    except (TypeError, ValueError) as e:
        raise ConfigError(f'{path}: feature section: {e}') from e
    unknown = sorted(set(augment) - set(AUGMENT_DEFAULTS))
    if unknown:
        raise ConfigError(f'{path}: augment section: unknown keys {unknown}; '
                          f'known keys: {sorted(AUGMENT_DEFAULTS)}')
    values['augment'] = {**AUGMENT_DEFAULTS, **augment}
    return SimpleNamespace(**values)


def parse_bool(text):
    """A real boolean flag value (the original recipe used ``type=eval``)."""
    value = str(text).strip().lower()
    if value in ('1', 'true', 'yes', 'y', 'on'):
        return True
    if value in ('0', 'false', 'no', 'n', 'off'):
        return False
    raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')


class ConfigArgumentParser(argparse.ArgumentParser):
    """argparse where unset flags fall back to the config, not to argparse.

    ``add(flag, key=..., help=...)`` shows the built-in default in
    ``--help``; ``parse_config()`` returns the merged configuration. The
    description (a script's docstring) is shown as written.
    """

    def __init__(self, **kw):
        kw.setdefault('formatter_class', argparse.RawDescriptionHelpFormatter)
        super().__init__(argument_default=argparse.SUPPRESS, **kw)
        self.add_argument('--config', metavar='YAML',
                          help='configuration file (conf/*.yaml); flags '
                          'given on the command line override it')
        self.add_argument('--debug', action='store_true',
                          help='show the full Python traceback of an error')

    def add(self, flag, key=None, help='', **kw):
        key = key or flag.lstrip('-')
        section, _, name = key.rpartition('.')
        default = (AUGMENT_DEFAULTS if section == 'augment' else
                   DEFAULTS).get(name, '-')
        if section or name in DEFAULTS:
            where = f'{section}: {name}' if section else name
            help = f'{help} [config key {where}, default: {default}]'
        return self.add_argument(flag, dest=key, help=help, **kw)

    def parse_config(self, argv=None):
        args = vars(self.parse_args(argv))
        return load_config(args.get('config'), args)
