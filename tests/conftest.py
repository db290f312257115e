"""Shared fixture: reference PyTorch PANNs and their converted weights."""
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from paddlespeech.cls.runtime import prepare_process

prepare_process()

from tests import panns_reference
from paddlespeech.cls.config import flat_keys
from paddlespeech.cls.datasets.synthetic import generate
from paddlespeech.cls.models.panns.convert import convert


@pytest.fixture(scope='session')
def reference(tmp_path_factory):
    """``arch -> namespace(model, pth, pdparams)``, each built only once.

    ``model`` is the reference PyTorch model (random weights, BatchNorm
    statistics calibrated on ``panns_reference.test_waveforms()``), ``pth``
    its checkpoint in the released format, ``pdparams`` that checkpoint
    converted with :func:`convert`.
    """
    built = {}

    def get(arch):
        if arch not in built:
            folder = tmp_path_factory.mktemp(f'reference_{arch}')
            model = panns_reference.calibrate_batchnorm(
                panns_reference.make_reference(arch),
                panns_reference.test_waveforms())
            pth = panns_reference.save_reference_checkpoint(
                model, folder / f'{arch}.pth')
            pdparams = folder / f'panns_{arch}.pdparams'
            convert(arch, pth, pdparams)
            built[arch] = SimpleNamespace(model=model, pth=pth,
                                          pdparams=pdparams)
        return built[arch]

    return get


ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / 'paddlespeech' / 'cls' / 'exps' / 'panns'


def script_env():
    """Environment for running the recipe's scripts from any directory."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [str(ROOT)] + [p for p in [env.get('PYTHONPATH')] if p])
    return env


def run_script(script, *args, check=True, timeout=600):
    """Run ``exps/panns/<script>`` with ``args``; by default it must succeed."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *map(str, args)],
        capture_output=True, text=True, env=script_env(), timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def conf_with(name, **flat):
    """``conf/<name>`` as a dict, with flat keys set in their sections."""
    conf = yaml.safe_load((ROOT / 'conf' / name).read_text())
    for key, value in flat.items():
        section, field = flat_keys()[key]
        conf.setdefault(section, {})[field] = value
    return conf


def train_args(dataset, checkpoint_dir, *extra):
    """train.py on a tiny dataset: CNN6 from scratch, fast settings."""
    return ('--config', ROOT / 'conf' / 'demo.yaml', '--data_dir', dataset,
            '--checkpoint_dir', checkpoint_dir, '--batch_size', 8,
            '--device', 'cpu', '--cpu_threads', 1, *extra)


def make_synthetic(out_dir, **settings):
    """:func:`paddlespeech.cls.datasets.synthetic.generate`."""
    return generate(out_dir, **settings)


@pytest.fixture(scope='session')
def tiny_dataset(tmp_path_factory):
    """3 classes x 2 clips x 5 folds of 0.5 s in ESC-50 layout (30 files)."""
    return make_synthetic(tmp_path_factory.mktemp('tiny_esc50'), classes=3,
                          clips_per_fold=2, folds=5, seconds=0.5)


@pytest.fixture(scope='session')
def trained_checkpoint(tiny_dataset, tmp_path_factory):
    """``epoch_2/model.pdparams`` of a 2-epoch run that saved every epoch;
    its stdout beside the checkpoint directory, in ``train.log``."""
    ckpt_dir = tmp_path_factory.mktemp('trained') / 'checkpoint'
    proc = run_script('train.py', *train_args(tiny_dataset, ckpt_dir,
                                              '--epochs', 2, '--save_freq', 1))
    (ckpt_dir.parent / 'train.log').write_text(proc.stdout)
    return ckpt_dir / 'epoch_2' / 'model.pdparams'

