"""The installable package: ``paddlespeech-cls`` and its commands, and a
wheel installed into a fresh environment, used from outside the checkout."""
import importlib
import os
import re
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from paddlespeech.cls import cli
from tests.conftest import ROOT, SCRIPTS, script_env


def flags(text):
    return sorted(set(re.findall(r'--\w+', text)))


def test_every_script_is_a_command():
    scripts = {p.relative_to(SCRIPTS).with_suffix('').as_posix()
               .replace('/', '.') for p in SCRIPTS.rglob('*.py')
               if p.name != '__init__.py'}
    assert scripts == {module for module, _ in cli.COMMANDS.values()}
    for module in scripts:
        script = importlib.import_module(f'paddlespeech.cls.exps.panns.'
                                         f'{module}')
        assert callable(script.main), module


def test_help_lists_the_commands_and_unknown_ones_are_refused(capsys):
    assert cli.main(['--help']) == 0
    out = capsys.readouterr().out
    for name, (_, line) in cli.COMMANDS.items():
        assert f'  {name} ' in out and line in out
    assert cli.main(['predcit']) == 2
    assert "unknown command 'predcit'; did you mean 'predict'?" in \
        capsys.readouterr().err


def test_command_is_the_script_with_its_flags(tmp_path):
    """``python -m paddlespeech.cls synth`` runs exps/panns/synth.py: same
    flags in its help (named after the command), same data written."""
    def run(*argv):
        return subprocess.run([sys.executable, *map(str, argv)], cwd=ROOT,
                              capture_output=True, text=True,
                              env=script_env(), check=True).stdout
    via_cli = run('-m', 'paddlespeech.cls', 'synth', '--help')
    assert via_cli.startswith('usage: paddlespeech-cls synth ')
    assert flags(via_cli) == flags(run(SCRIPTS / 'synth.py', '--help'))
    assert '--long_recording' in flags(via_cli)
    args = ('--classes', 2, '--folds', 1, '--clips_per_fold', 1)
    run('-m', 'paddlespeech.cls', 'synth', '--out_dir', tmp_path / 'a', *args)
    run(SCRIPTS / 'synth.py', '--out_dir', tmp_path / 'b', *args)
    a = sorted(p.relative_to(tmp_path / 'a') for p in
               (tmp_path / 'a').rglob('*') if p.is_file())
    assert len(a) == 3  # 2 clips and meta/esc50.csv
    for rel in a:
        assert (tmp_path / 'a' / rel).read_bytes() == \
            (tmp_path / 'b' / rel).read_bytes()


SOURCES = ('pyproject.toml', 'README.md', 'requirements.txt',
           'requirements-serve.txt', 'requirements-onnx.txt',
           'requirements-ray.txt',
           'tests/requirements.txt')


@pytest.mark.slow
def test_installed_package_works_outside_the_checkout(tmp_path):
    """pip installs a copy of the sources (offline, no dependencies: a
    fresh venv sees this interpreter's packages through a .pth file) into
    a venv; from a directory outside the checkout, with no PYTHONPATH, the
    command and the library come from that venv, with their data files."""
    src = tmp_path / 'src'
    for name in SOURCES:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / 'paddlespeech', src / 'paddlespeech',
                    ignore=shutil.ignore_patterns('__pycache__'))
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', venv],
                   check=True)
    python = venv / 'bin' / 'python'
    purelib = subprocess.run(
        [python, '-c', 'import sysconfig; print(sysconfig.get_paths()'
         '["purelib"])'], check=True, capture_output=True,
        text=True).stdout.strip()
    Path(purelib, 'outer.pth').write_text('\n'.join(site.getsitepackages()))
    subprocess.run([sys.executable, '-m', 'pip', '--python', python,
                    'install', '--quiet', '--no-index', '--no-deps',
                    '--no-build-isolation', src], check=True, timeout=300)

    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}

    def run(*argv):
        proc = subprocess.run([*map(str, argv)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    command = venv / 'bin' / 'paddlespeech-cls'
    listing = run(command, '--help')
    assert re.findall(r'^  (\w+) ', listing, re.M) == list(cli.COMMANDS)
    predict = run(command, 'predict', '--help')
    assert predict.startswith('usage: paddlespeech-cls predict ')
    assert flags(predict) == flags(subprocess.run(
        [sys.executable, SCRIPTS / 'predict.py', '--help'], check=True,
        capture_output=True, text=True, env=script_env()).stdout)
    where = run(python, '-c', (
        'import paddlespeech.cls, paddlespeech.cls.serving as s\n'
        'from paddlespeech.cls.models.panns.registry import '
        'AUDIOSET_LABELS_CSV as labels\n'
        'from pathlib import Path\n'
        'print(paddlespeech.cls.__file__)\n'
        'print(len(labels.read_text().splitlines()))\n'
        "print(len((Path(s.__file__).parent / 'static' / 'index.html')"
        '.read_text()))')).split()
    assert Path(where[0]).is_relative_to(venv), where[0]
    assert int(where[1]) == 528  # header and the 527 AudioSet classes
    assert int(where[2]) > 0
