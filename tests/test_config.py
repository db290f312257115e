"""The configuration: typed sections owned by their modules, flat files of
earlier versions loading to the same values, one-line errors for a typo or
a wrong type, and the flags writing into their sections."""
import dataclasses
import json
import pickle
import runpy
import subprocess
import sys
import typing

import pytest
import yaml

from tests.conftest import ROOT, run_script, script_env
from paddlespeech.cls.config import (ConfigError, Config, default,
                                     flat_keys, key_kinds, load_config,
                                     parse_bool, section_kinds, sections)

CONFS = sorted((ROOT / 'conf').glob('*.yaml'))


def flatten(data):
    """A sectioned config as a flat file of earlier versions writes it."""
    names = {where: key for key, where in flat_keys().items()}
    flat = {}
    for key, value in data.items():
        if key in sections() and key not in ('feature', 'augment'):
            flat.update({names[key, k]: v for k, v in (value or {}).items()})
        else:
            flat[key] = value
    return flat


def other_value(section, name):
    """A value of the field's type that is not its default."""
    kinds, _ = section_kinds(section)[name]
    value = default(section, name)
    if bool in kinds:
        return not value
    if int in kinds:
        return (value or 0) + 3
    if float in kinds:
        return (value or 0) + 0.25
    if str in kinds:
        return f'{value}-x'
    if dict in kinds:
        return {'classes': 4}
    raise AssertionError((section, name, kinds))


def test_sections_are_dataclasses_of_their_modules():
    owners = {name: cls.__module__ for name, cls in sections().items()}
    assert owners == {
        'data': 'paddlespeech.cls.datasets.layouts',
        'feature': 'paddlespeech.cls.features',
        'augment': 'paddlespeech.cls.augment',
        'model': 'paddlespeech.cls.models',
        'train': 'paddlespeech.cls.train_config',
        'runtime': 'paddlespeech.cls.runtime',
        'predict': 'paddlespeech.cls.prediction',
        'deploy': 'paddlespeech.cls.inference',
        'export': 'paddlespeech.cls.artifact',
        'detect': 'paddlespeech.cls.events',
        'analyze': 'paddlespeech.cls.analysis',
        'calibrate': 'paddlespeech.cls.calibration',
        'serve': 'paddlespeech.cls.serving'}
    assert all(dataclasses.is_dataclass(c) for c in sections().values())
    # the flat keys of earlier versions, the 13 renamed ones among them
    # (and those of the calibrate section, named as detect's are)
    # every field of every section but feature and augment (never flat)
    # has exactly one flat name
    fields = {(name, f.name) for name, c in sections().items()
              if name not in ('feature', 'augment')
              for f in dataclasses.fields(c)}
    assert sorted(set(flat_keys().values())) == sorted(fields)
    assert len(flat_keys()) == len(fields) > 80
    renamed = {k: v for k, v in flat_keys().items() if k != v[1]}
    assert renamed == {
        'expected_backbone': ('predict', 'backbone'),
        'expected_sample_rate': ('predict', 'sample_rate'),
        'expected_n_mels': ('predict', 'n_mels'),
        'tag_arch': ('predict', 'arch'),
        'infer_batch_size': ('predict', 'batch_size'),
        'trt_precision': ('deploy', 'precision'),
        'export_format': ('export', 'format'),
        'export_precision': ('export', 'precision'),
        'detect_model_dir': ('detect', 'model_dir'),
        'audioset': ('detect', 'pretrained'),
        'detect_window_seconds': ('detect', 'window_seconds'),
        'detect_dir': ('detect', 'output_dir'),
        'pcm_sample_rate': ('detect', 'sample_rate'),
        'pcm_channels': ('detect', 'channels'),
        'pcm_format': ('detect', 'format'),
        'calibrate_model_dir': ('calibrate', 'model_dir'),
        'calibrate_folds': ('calibrate', 'folds'),
        'calibrate_dir': ('calibrate', 'output_dir'),
        'serve_workers': ('serve', 'workers'),
        'analysis_dir': ('analyze', 'output_dir'),
        'analyze_top_k': ('analyze', 'top_k'),
        'analyze_workers': ('analyze', 'workers')}


def test_reading_a_config_loads_neither_paddle_nor_the_server():
    code = ('import json, sys\n'
            'from paddlespeech.cls.config import load_config\n'
            f'cfg = load_config({str(ROOT / "conf" / "demo.yaml")!r})\n'
            'print(json.dumps([cfg.train.epochs, sorted(m for m in '
            'sys.modules if m.split(".")[0] in ("paddle", "fastapi", '
            '"uvicorn"))]))')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, env=script_env(), cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [15, []]


@pytest.mark.parametrize('conf', CONFS, ids=lambda p: p.name)
def test_every_conf_loads_and_its_flat_form_loads_the_same(conf, tmp_path):
    data = yaml.safe_load(conf.read_text())
    assert set(data) <= set(sections()), 'conf files are written in sections'
    cfg = load_config(conf)
    flat = tmp_path / conf.name
    flat.write_text(yaml.safe_dump(flatten(data)))
    assert vars(load_config(flat)) == {**vars(cfg), 'config': str(flat)}
    for section, values in data.items():  # what the file says is loaded
        for name, value in values.items():
            assert getattr(getattr(cfg, section), name) == value, name


def test_flat_and_sectioned_files_give_every_key_the_same_value(tmp_path):
    """Every flat key set to a value that is not its default, once at the
    top level and once in its section."""
    flat, nested = {}, {}
    for key, (section, name) in flat_keys().items():
        value = other_value(section, name)
        flat[key] = value
        nested.setdefault(section, {})[name] = value
    nested_only = {'feature': {'n_mels': 32}, 'augment': {'mixup_alpha': 0.4}}
    (tmp_path / 'flat.yaml').write_text(yaml.safe_dump({**flat,
                                                        **nested_only}))
    (tmp_path / 'nested.yaml').write_text(yaml.safe_dump({**nested,
                                                          **nested_only}))
    a = load_config(tmp_path / 'flat.yaml')
    b = load_config(tmp_path / 'nested.yaml')
    assert a.flat() == b.flat() == flat
    assert {k: v for k, v in vars(a).items() if k != 'config'} == \
        {k: v for k, v in vars(b).items() if k != 'config'}
    assert b.detect.model_dir == b.detect_model_dir == flat['detect_model_dir']
    assert b.predict.batch_size == b.infer_batch_size == 19
    assert b.train.batch_size == b.batch_size == 19
    assert (b.feature.n_mels, b.augment.mixup_alpha) == (32, 0.4)
    assert load_config().flat() != flat  # the values are not the defaults


def test_flat_attributes_read_and_write_their_section():
    cfg = load_config(None, {'epochs': 4, 'detect_model_dir': 'm',
                             'augment.gain_db': 3})
    assert (cfg.train.epochs, cfg.detect.model_dir, cfg.augment.gain_db) == \
        (4, 'm', 3)
    cfg.epochs = 7
    cfg.infer_batch_size = 2
    assert (cfg.train.epochs, cfg.predict.batch_size) == (7, 2)
    other = cfg.replace(split=3, resume=True)
    assert (other.data.split, other.train.resume) == (3, True)
    assert (cfg.data.split, cfg.train.resume) == (1, False)
    other.train.epochs = 1
    assert cfg.epochs == 7  # sections are copied, not shared
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    with pytest.raises(AttributeError, match='epoch'):
        cfg.epoch
    with pytest.raises(AttributeError, match='epoch'):
        cfg.epoch = 3
    with pytest.raises(ValueError, match='epoch'):
        load_config(None, {'epoch': 3})


def test_a_key_given_flat_and_in_its_section_is_refused(tmp_path):
    conf = tmp_path / 'c.yaml'
    conf.write_text('epochs: 3\ntrain:\n  epochs: 4\n')
    with pytest.raises(ConfigError) as e:
        load_config(conf)
    assert str(e.value) == (f'{conf}: train: epochs and epochs are the same '
                            f'key: keep one')


def test_config_augment_section(tmp_path):
    conf = tmp_path / 'c.yaml'
    conf.write_text('augment:\n  mixup_alpha: 0.5\n  spec_time_masks: 2\n')
    cfg = load_config(conf, {'augment.spec_time_masks': 3})
    assert cfg.augment.mixup_alpha == 0.5
    assert cfg.augment.spec_time_masks == 3
    assert cfg.augment.gain_db == 0
    conf.write_text('augment:\n  mixup: 0.5\n')
    with pytest.raises(ConfigError, match=r"augment: unknown key 'mixup' "
                       r"\(did you mean mixup_alpha\?\)"):
        load_config(conf)


def test_config_unknown_keys_suggest_near_misses(tmp_path):
    """A typo is named with its near misses and a pointer to the keys'
    reference, not the ~100 known keys."""
    conf = tmp_path / 'c.yaml'
    conf.write_text('epoch: 3\nlerning_rate: 0.1\nfoo_bar_baz: 1\n')
    with pytest.raises(ConfigError) as e:
        load_config(conf)
    message = str(e.value)
    assert message.startswith(f'{conf}: unknown keys ')
    assert "'epoch' (did you mean epochs?)" in message
    assert "'lerning_rate' (did you mean learning_rate?)" in message
    assert "'foo_bar_baz', " in message and 'docs/flags.md' in message
    assert '\n' not in message and len(message) < 300
    assert 'max_upload_mb' not in message  # not the list of all keys
    for text, error in [
            ('feature:\n  n_mel: 32\n',
             "feature: unknown key 'n_mel' (did you mean n_mels?)"),
            ('train:\n  epoch: 3\n',
             "train: unknown key 'epoch' (did you mean epochs?)"),
            # a flat name written inside its section
            ('detect:\n  detect_model_dir: x\n',
             "detect: unknown key 'detect_model_dir' (did you mean "
             "model_dir?)"),
            # a key of another section
            ('data:\n  epochs: 3\n', "data: unknown key 'epochs' (a key of "
                                     "train:)"),
            ('train:\n  mixup_alpha: 1\n', "train: unknown key 'mixup_alpha' "
                                           "(a key of augment:)")]:
        conf.write_text(text)
        with pytest.raises(ConfigError) as e:
            load_config(conf)
        assert str(e.value).startswith(f'{conf}: {error}; known: '), text
        assert '\n' not in str(e.value)


def test_config_value_types_checked_at_load(tmp_path):
    conf = tmp_path / 'c.yaml'

    def load(text):
        conf.write_text(text)
        return load_config(conf)

    # YAML 1.1 reads 1e-3 (no dot) as a string: a number was meant
    cfg = load('learning_rate: 1e-3\nepochs: 7\namp: off\npretrained: no\n'
               'warmup_epochs: 0.5\nfolds: 1,3\nclip_seconds: null\n'
               'feature:\n  f_max: null\n  sample_rate: "16000"\n'
               'augment:\n  gain_db: 2.5\n  spec_fill: "-80"\n'
               'serve:\n  api_key: 1234\n  workers: "2"\n')
    assert type(cfg.learning_rate) is float and cfg.learning_rate == 1e-3
    assert (cfg.epochs, cfg.amp, cfg.pretrained) == (7, 'off', False)
    assert (cfg.warmup_epochs, cfg.folds, cfg.clip_seconds) == (
        0.5, '1,3', None)
    assert cfg.feature.f_max is None and cfg.feature.sample_rate == 16000
    assert cfg.augment.gain_db == 2.5 and cfg.augment.spec_fill == -80
    assert (cfg.serve.api_key, cfg.serve_workers) == ('1234', 2)
    assert load('train:\n  amp: off\n').train.amp == 'off'
    for text, error in [
            ('epochs: ten', "epochs must be an integer, got 'ten'"),
            ('train:\n  epochs: ten', "train: epochs must be an integer, "
                                      "got 'ten'"),
            ('epochs: 2.5', 'epochs must be an integer, got 2.5'),
            ('learning_rate: fast', "learning_rate must be a number, got "
                                    "'fast'"),
            ('pretrained: maybe', "pretrained must be true or false, got "
                                  "'maybe'"),
            ('model:\n  pretrained: maybe', "model: pretrained must be true "
                                            "or false, got 'maybe'"),
            ('data_dir: [a, b]', "data_dir must be a string, got ['a', 'b']"),
            ('detect_model_dir: [a]', "detect_model_dir must be a string, "
                                      "got ['a']"),
            ('detect:\n  model_dir: [a]', "detect: model_dir must be a "
                                          "string, got ['a']"),
            ('predict:\n  batch_size: all', "predict: batch_size must be "
                                            "an integer, got 'all'"),
            ('synthetic: 3', 'synthetic must be a mapping, got 3'),
            ('train: 3', 'train must be a mapping of keys, got 3'),
            ('feature:\n  n_mels: many', "feature: n_mels must be an "
                                         "integer, got 'many'"),
            ('augment:\n  mixup_alpha: yes', 'augment: mixup_alpha must be '
                                             'a number, got True')]:
        with pytest.raises(ConfigError) as e:
            load(text + '\n')
        assert str(e.value) == f'{conf}: {error}', text


def test_config_types_match_the_flags():
    """Each key's checked type is the type its flag parses to, so a value
    the command line takes is taken from YAML too; every flag of every
    script is a configuration key."""
    sys.path.insert(0, str(ROOT / 'docs'))
    try:
        from make_flags import SCRIPTS
    finally:
        sys.path.pop(0)
    flag_type = {int: int, float: float, parse_bool: bool}
    checked = 0
    for script in SCRIPTS:
        parser = runpy.run_path(str(ROOT / script))['get_parser']()
        for a in parser._actions:
            if a.dest in ('help', 'config', 'debug', 'log_level'):
                continue
            kinds, _ = key_kinds(a.dest)
            if a.type in flag_type:
                assert flag_type[a.type] in kinds, a.dest
                checked += 1
            elif a.const is True:  # store_true
                assert kinds == (bool,), a.dest
                checked += 1
            elif a.nargs == '+':
                assert list in kinds, a.dest
    assert checked > 50


def test_field_annotations_are_types_the_loader_checks():
    """A section field typed as something the loader cannot check would
    take any YAML value unchecked."""
    for name in sections():
        for field, (kinds, _) in section_kinds(name).items():
            assert kinds and set(kinds) <= {bool, int, float, str, list,
                                            dict}, (name, field)


def test_help_names_the_section_key_and_its_flat_name():
    parser = runpy.run_path(str(ROOT / 'paddlespeech' / 'cls' / 'exps' /
                                'panns' / 'detect.py'))['get_parser']()
    text = ' '.join(parser.format_help().split())
    assert '[config key detect: model_dir (flat: detect_model_dir), ' \
           'default: None]' in text
    assert '[config key detect: threshold, default: None]' in text


def test_wrong_config_type_is_one_line_before_data_loading(tmp_path):
    conf = tmp_path / 'c.yaml'
    conf.write_text('train:\n  epochs: ten\n')
    proc = run_script('train.py', '--config', conf, '--data_dir',
                      tmp_path / 'missing', check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {conf}: train: epochs must be an integer, got 'ten'"]


def test_config_is_plain_python_for_library_callers():
    """``Config`` is what load_config returns: sections by name."""
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert set(vars(cfg)) == {*sections(), 'config'}
    assert typing.get_type_hints(type(cfg.train))['epochs'] is int


def test_library_functions_take_sections_not_the_whole_configuration():
    """Only what assembles a run (the trainer, cross-validation) takes the
    whole configuration; every other library function takes its
    section(s), so a parameter named ``cfg`` anywhere else is a regression
    to the flat bag."""
    import ast
    allowed = {('trainer.py', '__init__'), ('crossval.py', 'cross_validate'),
               ('crossval.py', 'train_fold')}
    library = ROOT / 'paddlespeech' / 'cls'
    found = set()
    for path in library.rglob('*.py'):
        if 'exps' in path.parts or path.name == 'config.py':
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = {a.arg for a in node.args.args + node.args.kwonlyargs}
                if 'cfg' in names:
                    found.add((path.name, node.name))
    assert found == allowed
