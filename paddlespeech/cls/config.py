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
are an error, so a typo never silently trains with a default, and so is a
value of the wrong type, at load time rather than after data loading.
Importing this module does not import Paddle.
"""
import argparse
import dataclasses
import difflib
from pathlib import Path
from types import SimpleNamespace

import yaml

from .errors import UserError
from .logs import LEVELS
from .features import FeatureConfig

DEFAULTS = {
    # data
    'dataset': 'auto',  # auto | esc50 | folder | manifest | synthetic (stage 0 generates it)
    'data_home': './data',
    'data_dir': None,  # ESC-50 layout, a folder per class, or a manifest; None: ESC-50
    'split': 1,  # dev fold; training uses the other folds
    'num_folds': 5,  # folds assigned to data without them
    'folds_file': None,  # None: <data_dir>/.folds.csv, beside a manifest <manifest stem>.folds.csv (read-only data: <checkpoint_dir>/folds.csv)
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
    'head_only': False,  # the head alone, on cached backbone embeddings
    'head_hidden': 0,  # units of a hidden layer in the head; 0: linear head
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
    'window_seconds': None,  # None: the model's clip length (audio.Windowing)
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
    'max_inflight_seconds': 1800.0,  # audio admitted at once; more: 503
    'max_restarts': 5,  # failed restarts of a dead predictor in a row
    'graceful_timeout': 30.0,  # seconds requests get to finish at shutdown
    'api_key': None,  # None: $PADDLESPEECH_CLS_API_KEY, else no key
    'allowed_hosts': None,  # None: loopback names on loopback, else any
    'allowed_origins': None,  # None: only the service's own page
    'max_connections': None,  # None: 1000, or fewer under the file limit
    'header_timeout': 10.0,  # seconds to send a request's headers
    'body_timeout': 60.0,  # seconds to send a request's body
    'keep_alive_timeout': 5.0,  # idle seconds between requests
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


# Types of the keys whose default does not show it: None, or a whole
# number where fractions are fine. The others have their default's type.
TYPES = {
    'data_dir': str, 'folds_file': str, 'clip_seconds': float,
    'pretrained_path': str, 'warmup_epochs': float, 'lr_step_epochs': float,
    'window_seconds': float, 'detect_dir': str,
    'visualdl_dir': str, 'folds': (str, int), 'cv_dir': str, 'device': str,
    'cpu_threads': int, 'wav': (str, list), 'checkpoint': str,
    'label_file': str, 'expected_backbone': str, 'expected_sample_rate': int,
    'expected_n_mels': int, 'quantize': str, 'calib_data': str,
    'check_data': str, 'backend': str, 'detect_model_dir': str,
    'detect_window_seconds': float, 'hop_seconds': float,
    'threshold_off': float, 'classes': (str, list), 'api_key': str,
    'allowed_hosts': (str, list), 'allowed_origins': (str, list),
    'max_connections': int,
}
AUGMENT_TYPES = {'mixup_alpha': float, 'gain_db': float,
                 'spec_fill': (str, float)}
FEATURE_NULLABLE = ('f_max', 'top_db')  # None: Nyquist, no clipping

_TYPE_NAMES = {bool: 'true or false', int: 'an integer', float: 'a number',
               str: 'a string', list: 'a list', dict: 'a mapping'}


class ConfigError(UserError):
    pass


SECTIONS = ('feature', 'augment')


def key_types(defaults, explicit):
    """``{key: (types...)}``: ``explicit``, else the default's type."""
    types = {k: type(v) for k, v in defaults.items() if v is not None}
    types.update(explicit)
    return {k: t if isinstance(t, tuple) else (t,) for k, t in types.items()}


def feature_types():
    return {f.name: (f.type,) for f in dataclasses.fields(FeatureConfig)}


def coerce(value, kinds):
    """``value`` as one of the types ``kinds``; ValueError if it is none.

    A string that reads as a number is that number where a number is
    expected: YAML 1.1 reads ``1e-3`` (no dot) as a string. A number
    where only a string is expected becomes its text (``api_key: 1234``).
    """
    if isinstance(value, bool) or bool in kinds:
        if isinstance(value, bool) and bool in kinds:
            return value
        if bool in kinds and isinstance(value, (str, int)):
            try:
                return parse_bool(value)
            except argparse.ArgumentTypeError:
                pass
        raise ValueError(value)
    if isinstance(value, str):
        for kind in (int, float):
            if kind in kinds:
                try:
                    return kind(value)
                except ValueError:
                    pass
        if str in kinds:
            return value
    elif isinstance(value, (int, float)):
        if int in kinds and isinstance(value, int) or float in kinds:
            return value
        if str in kinds:
            return str(value)
    elif isinstance(value, (list, dict)) and type(value) in kinds:
        return value
    raise ValueError(value)


def check_types(values, types, where, nullable=()):
    """``values`` with each value of a key in ``types`` coerced to its
    type (None allowed for the keys in ``nullable``); ConfigError naming
    the key, ``where`` and the expected type otherwise."""
    out = dict(values)
    for key, value in values.items():
        if key not in types or value is None and key in nullable:
            continue
        if key == 'amp' and value is False:  # YAML 1.1 reads off as false
            out[key] = 'off'
            continue
        try:
            out[key] = coerce(value, types[key])
        except ValueError:
            expected = ' or '.join(_TYPE_NAMES[t] for t in types[key])
            raise ConfigError(f'{where}: {key} must be {expected}, got '
                              f'{value!r}') from None
    return out


def unknown_keys(where, unknown, known, listing):
    """The error for ``unknown`` keys: near misses of ``known``, and where
    the keys are listed (``listing``)."""
    named = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), known, n=3)
        named.append(f'{key!r}' + (f' (did you mean {" or ".join(close)}?)'
                                   if close else ''))
    return ConfigError(f'{where}: unknown key{"s" * (len(unknown) > 1)} '
                       f'{", ".join(named)}; {listing}')


def _section(data, name, where):
    section = data.pop(name, None) or {}
    if not isinstance(section, dict):
        raise ConfigError(f'{where}: {name} must be a mapping of keys, got '
                          f'{section!r}')
    return section


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
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, 'problem_mark', None)
            where = f' at line {mark.line + 1}' if mark else ''
            raise ConfigError(f'{path}: not valid YAML{where}: '
                              f'{getattr(e, "problem", None) or e}') from None
        if not isinstance(data, dict):
            raise ConfigError(f'{path}: expected keys and values, got '
                              f'{type(data).__name__}')
        unknown = sorted(set(data) - set(DEFAULTS) - set(SECTIONS), key=str)
        if unknown:
            raise unknown_keys(
                path, unknown, list(DEFAULTS) + list(SECTIONS),
                'known keys: docs/flags.md (config key column), all of '
                'them in DEFAULTS of paddlespeech/cls/config.py')
        feature = check_types(_section(data, 'feature', path),
                              feature_types(), f'{path}: feature',
                              FEATURE_NULLABLE)
        augment = check_types(_section(data, 'augment', path),
                              key_types(AUGMENT_DEFAULTS, AUGMENT_TYPES),
                              f'{path}: augment',
                              [k for k, v in AUGMENT_DEFAULTS.items()
                               if v is None])
        values.update(check_types(
            data, key_types(DEFAULTS, TYPES), path,
            [k for k, v in DEFAULTS.items() if v is None]))
    for key, value in (overrides or {}).items():
        if key.startswith('augment.'):
            augment[key.split('.', 1)[1]] = value
        elif key in DEFAULTS:
            values[key] = value
        elif key not in ('config', 'debug', 'log_level'):
            raise ValueError(f'override {key!r} has no entry in DEFAULTS')
    if values['amp'] is False:  # YAML 1.1 reads an unquoted off as false
        values['amp'] = 'off'
    if values['detect_dir'] is None:
        values['detect_dir'] = str(Path(values['export_dir']).parent /
                                   'detect')
    values['config'] = str(path) if path is not None else None
    unknown = sorted(set(feature) - set(feature_types()), key=str)
    if unknown:
        raise unknown_keys(f'{path}: feature', unknown, list(feature_types()),
                           f'known: {", ".join(feature_types())}')
    try:
        values['feature'] = FeatureConfig.from_dict(feature)
    except (TypeError, ValueError) as e:
        raise ConfigError(f'{path}: feature section: {e}') from e
    unknown = sorted(set(augment) - set(AUGMENT_DEFAULTS), key=str)
    if unknown:
        raise unknown_keys(f'{path}: augment', unknown, list(AUGMENT_DEFAULTS),
                           f'known: {", ".join(AUGMENT_DEFAULTS)}')
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
        self.add_argument('--log_level', choices=LEVELS,
                          help='messages shown: debug, info (default), '
                          'warning or error')

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
