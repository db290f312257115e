"""The configuration: defaults < ``conf/*.yaml`` < command line, in typed
sections.

Each concept owns a dataclass of its settings in its module
(:data:`SECTIONS`), and a YAML file has one mapping per section::

    train:
      epochs: 10
    detect:
      model_dir: exp/demo/export

Flags keep their names and write into their section's field (the flag
reference, docs/flags.md, names each flag's key). Flat files of earlier
versions keep loading: a top-level key is the flat name of one field,
its name (``epochs`` is ``train.epochs``) or, where a name recurs in
several sections, the name a section's ``FLAT`` gives it
(``detect_model_dir`` is ``detect.model_dir``, ``infer_batch_size`` is
``predict.batch_size``); ``feature`` and ``augment`` were sections already
and have no flat names. The loaded :class:`Config` reads both ways
(``cfg.train.epochs``, ``cfg.epochs``). Values are checked against the
field types and unknown keys refused, with near misses named, when the
file loads rather than after data loading. Importing this module, and
loading a configuration, imports no Paddle.
"""
import argparse
import dataclasses
import difflib
import functools
import importlib
import typing
from pathlib import Path

import yaml

from .errors import UserError
from .logs import LEVELS

# section -> (module, dataclass), in the order the flag reference uses
SECTIONS = {
    'data': ('.datasets.layouts', 'DataConfig'),
    'feature': ('.features', 'FeatureConfig'),
    'augment': ('.augment', 'AugmentConfig'),
    'model': ('.models', 'ModelConfig'),
    'train': ('.train_config', 'TrainConfig'),
    'runtime': ('.runtime', 'RuntimeConfig'),
    'predict': ('.prediction', 'PredictConfig'),
    'deploy': ('.inference', 'DeployConfig'),
    'export': ('.artifact', 'ExportConfig'),
    'detect': ('.events', 'DetectConfig'),
    'analyze': ('.analysis', 'AnalyzeConfig'),
    'calibrate': ('.calibration', 'CalibrateConfig'),
    'serve': ('.serving', 'ServeConfig'),
}
NESTED_ONLY = ('feature', 'augment')  # sections without flat names

_TYPE_NAMES = {bool: 'true or false', int: 'an integer', float: 'a number',
               str: 'a string', list: 'a list', dict: 'a mapping'}


class ConfigError(UserError):
    pass


@functools.lru_cache(maxsize=None)
def sections():
    """``{section: dataclass}``; the owners load on first use. None of
    them imports this module (a test checks), so loading them is no
    circle."""
    return {name: getattr(importlib.import_module(module, __package__), cls)
            for name, (module, cls) in SECTIONS.items()}


@functools.lru_cache(maxsize=None)
def flat_keys():
    """``{flat key: (section, field)}`` for every section with flat names."""
    out = {}
    for name, cls in sections().items():
        if name in NESTED_ONLY:
            continue
        aliases = getattr(cls, 'FLAT', {})
        for f in dataclasses.fields(cls):
            key = aliases.get(f.name, f.name)
            assert key not in out, f'{key} in {out[key][0]} and {name}'
            out[key] = (name, f.name)
    return out


def field_kinds(annotation):
    """``(types, nullable)`` of a field annotation: ``Optional[float]`` is
    ``((float,), True)``, ``Union[str, list]`` ``((str, list), False)``."""
    args = (typing.get_args(annotation)
            if typing.get_origin(annotation) is typing.Union
            else (annotation,))
    kinds = tuple(typing.get_origin(a) or a for a in args
                  if a is not type(None))
    return kinds, type(None) in args


@functools.lru_cache(maxsize=None)
def section_kinds(section):
    """``{field: (types, nullable)}`` of ``section``."""
    return {f.name: field_kinds(f.type)
            for f in dataclasses.fields(sections()[section])}


def locate(key):
    """``(section, field)`` of a flat key or a ``section.field`` name;
    None if it is neither."""
    section, _, name = key.rpartition('.')
    if section:
        return (section, name) if name in section_kinds(section) else None
    return flat_keys().get(key)


def key_kinds(key):
    """The ``(types, nullable)`` a key (flat or ``section.field``) takes."""
    section, name = locate(key)
    return section_kinds(section)[name]


def default(section, name):
    """The built-in value of a field."""
    f = {f.name: f for f in dataclasses.fields(sections()[section])}[name]
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


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


def check_value(section, name, value, where):
    """``value`` of ``section.name`` coerced to the field's type;
    ConfigError naming ``where`` (the file and the key as written) and the
    expected type otherwise."""
    kinds, nullable = section_kinds(section)[name]
    if value is None and nullable:
        return None
    if (section, name) == ('train', 'amp') and value is False:
        return 'off'  # YAML 1.1 reads an unquoted off as false
    try:
        return coerce(value, kinds)
    except ValueError:
        expected = ' or '.join(_TYPE_NAMES[t] for t in kinds)
        raise ConfigError(f'{where} must be {expected}, got {value!r}') \
            from None


def unknown_keys(where, unknown, known, listing, homes=None):
    """The error for ``unknown`` keys: near misses of ``known``, the
    section a key belongs to (``homes``), and where the keys are listed
    (``listing``)."""
    named = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), known, n=3)
        if homes and key in homes:
            hint = f' (a key of {homes[key]}:)'
        elif close:
            hint = f' (did you mean {" or ".join(close)}?)'
        else:
            hint = ''
        named.append(f'{key!r}{hint}')
    return ConfigError(f'{where}: unknown key{"s" * (len(unknown) > 1)} '
                       f'{", ".join(named)}; {listing}')


class Config:
    """A loaded configuration: one dataclass per section (``cfg.train``,
    ``cfg.feature``) and every flat key of earlier versions, read and
    written through to its section (``cfg.epochs`` is
    ``cfg.train.epochs``); ``config`` is the YAML file it came from."""

    def __init__(self, values, config=None):
        self.__dict__.update(values)
        self.__dict__['config'] = config

    def __getattr__(self, name):
        where = flat_keys().get(name) if not name.startswith('__') else None
        if where is None or where[0] not in self.__dict__:
            raise AttributeError(f'no configuration key {name!r}')
        return getattr(self.__dict__[where[0]], where[1])

    def __setattr__(self, name, value):
        if name in self.__dict__:
            self.__dict__[name] = value
        elif name in flat_keys():
            section, field = flat_keys()[name]
            setattr(self.__dict__[section], field, value)
        else:
            raise AttributeError(f'no configuration key {name!r}')

    def __eq__(self, other):
        return isinstance(other, Config) and vars(self) == vars(other)

    def __repr__(self):
        items = ', '.join(f'{k}={v!r}' for k, v in vars(self).items())
        return f'Config({items})'

    def replace(self, **changes):
        """A copy with ``changes`` (flat keys or sections) applied; this
        configuration stays as it is."""
        values = {k: dataclasses.replace(v) if dataclasses.is_dataclass(v)
                  else v for k, v in vars(self).items()}
        new = Config({k: v for k, v in values.items() if k != 'config'},
                     values['config'])
        for key, value in changes.items():
            setattr(new, key, value)
        return new

    def flat(self):
        """``{flat key: value}`` (without ``feature`` and ``augment``)."""
        return {key: getattr(self, key) for key in flat_keys()}


def read_yaml(path):
    """The mapping a config file holds; ConfigError if it holds none."""
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
    return data


def file_values(path, data):
    """``{section: {field: value}}`` of a file's sections and flat keys,
    type-checked; ConfigError for unknown keys, a key set twice, or a
    value of the wrong type."""
    values = {name: {} for name in sections()}
    written = {}  # (section, field) -> how the file wrote it

    def put(section, name, value, as_written):
        if (section, name) in written:
            raise ConfigError(f'{path}: {as_written} and '
                              f'{written[section, name]} are the same key: '
                              f'keep one')
        written[section, name] = as_written
        values[section][name] = check_value(section, name, value,
                                            f'{path}: {as_written}')

    unknown = []
    for key, value in data.items():
        if key in sections():
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f'{path}: {key} must be a mapping of keys, '
                                  f'got {value!r}')
            known = list(section_kinds(key))
            wrong = sorted((k for k in value if k not in known), key=str)
            if wrong:
                raise unknown_keys(
                    f'{path}: {key}', wrong, known,
                    f'known: {", ".join(known)}', _homes(key))
            for name, v in value.items():
                put(key, name, v, f'{key}: {name}')
        elif key in flat_keys():
            put(*flat_keys()[key], value, key)
        else:
            unknown.append(key)
    if unknown:
        raise unknown_keys(
            path, sorted(unknown, key=str), [*flat_keys(), *sections()],
            'known keys: the sections and flat names in docs/flags.md '
            '(config key column)')
    return values


def _homes(section):
    """``{name: other section}`` for the fields of the other sections and
    the flat names, to say where a key written in ``section`` belongs."""
    homes = {}
    for other in sections():
        if other != section:
            homes.update({name: other for name in section_kinds(other)
                          if name not in section_kinds(section)})
    homes.update({key: s for key, (s, _) in flat_keys().items()
                  if s != section and key not in section_kinds(section)})
    return homes


def load_config(path=None, overrides=None):
    """The built-in values < the YAML file at ``path`` < ``overrides``
    (flat keys, or ``section.field`` names such as ``augment.mixup_alpha``,
    as the parsers' flags write them)."""
    values = ({name: {} for name in sections()} if path is None
              else file_values(path, read_yaml(path)))
    for key, value in (overrides or {}).items():
        if key in ('config', 'debug', 'log_level'):
            continue
        where = locate(key)
        if where is None:
            raise ValueError(f'override {key!r} is no configuration key')
        values[where[0]][where[1]] = value
    built = {}
    for name, cls in sections().items():
        try:
            built[name] = cls(**values[name])
        except (TypeError, ValueError) as e:
            raise ConfigError(f'{path}: {name} section: {e}') from e
    cfg = Config(built, str(path) if path is not None else None)
    if cfg.train.amp is False:  # an override read from YAML elsewhere
        cfg.train.amp = 'off'
    if cfg.detect.output_dir is None:
        cfg.detect.output_dir = str(Path(cfg.export.export_dir).parent /
                                    'detect')
    if cfg.analyze.output_dir is None:
        cfg.analyze.output_dir = str(Path(cfg.export.export_dir).parent /
                                     'analysis')
    return cfg


def parse_bool(text):
    """A real boolean flag value (the original recipe used ``type=eval``)."""
    value = str(text).strip().lower()
    if value in ('1', 'true', 'yes', 'y', 'on'):
        return True
    if value in ('0', 'false', 'no', 'n', 'off'):
        return False
    raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')


def describe(key):
    """``(section: field, default)`` of a flag's key, as the flag
    reference and ``--help`` show it (with the flat name where it is not
    the field's); None if it is no configuration key."""
    where = locate(key)
    if where is None:
        return None
    flat = [k for k, v in flat_keys().items() if v == where]
    alias = f' (flat: {flat[0]})' if flat and flat[0] != where[1] else ''
    return f'{where[0]}: {where[1]}{alias}', default(*where)


class ConfigArgumentParser(argparse.ArgumentParser):
    """argparse where unset flags fall back to the config, not to argparse.

    ``add(flag, key=..., help=...)`` shows the key and its built-in
    default in ``--help``; ``parse_config()`` returns the merged
    configuration. The description (a script's docstring) is shown as
    written.
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
        described = describe(key)
        if described:
            help = (f'{help} [config key {described[0]}, default: '
                    f'{described[1]}]')
        return self.add_argument(flag, dest=key, help=help, **kw)

    def parse_config(self, argv=None):
        args = vars(self.parse_args(argv))
        return load_config(args.get('config'), args)


# the flags predict.py, tag.py and deploy/predict.py share; the help of
# --window_seconds and --label_file, which other scripts take too
WINDOW_HELP = ('files are classified in consecutive windows of this many '
               'seconds, a shorter one padded with silence to this length, '
               'and the window scores averaged (weighted by the audio in '
               'each), so memory does not grow with the length of a file; '
               'default: the clip length the model was trained on (10 s, '
               'unpadded, for a model that does not record it)')

PREDICTION_OUTPUT_HELP = """\
Output: per file a [path] line, then the top_k "Label: score" lines, best
first. Files are scored in windows of the model's clip length (as training
evaluates its dev clips; --window_seconds overrides) and the window scores
averaged, so any length fits in memory. A file that
cannot be used gets one "error:" line on stderr and the others are still
scored; the exit status is 0 only if every file was scored."""

LABEL_FILE_HELP = ('class names, one per line, for a model without '
                   'metadata (upstream PaddleSpeech); default: ESC-50\'s')


def prediction_parser(description, feat_backend=True):
    """The parser of a prediction script (predict.py, tag.py,
    deploy/predict.py) with the flags they all share (inputs, device,
    output, and the front-end settings that may only confirm the model's
    own); ``feat_backend`` for the dynamic-graph ones. The script adds its
    own flags; :func:`..prediction.main` runs it."""
    from .features import FEAT_BACKENDS
    p = ConfigArgumentParser(description=description,
                             epilog=PREDICTION_OUTPUT_HELP)
    p.add('--wav', nargs='+', required=True,
          help='audio file(s) or directories to classify')
    p.add('--device', help='cpu, gpu or gpu:N (default: gpu if available)')
    p.add('--cpu_threads', type=int, help='CPU threads (default: all cores)')
    p.add('--top_k', type=int, help='number of labels printed per file')
    p.add('--window_seconds', type=float, help=WINDOW_HELP)
    p.add('--batch_size', key='infer_batch_size', type=int,
          help='windows per model run (windows of equal length, from one '
          'file or several, are batched; a file\'s scores do not depend '
          'on its neighbours)')
    p.add('--sample_rate', key='expected_sample_rate', type=int,
          help='only checked: must equal the sample rate stored with the '
          'model')
    p.add('--n_mels', key='expected_n_mels', type=int,
          help='only checked: must equal the number of mel bins stored '
          'with the model')
    if feat_backend:
        p.add('--feat_backend', choices=FEAT_BACKENDS,
              help='front end used to compute log-mel features')
    return p
