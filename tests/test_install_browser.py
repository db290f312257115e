"""tests/install_browser.sh and the ``browser`` fixture on a PATH without
chromium: install as root, else one line naming the command, and the
browser test errors rather than being skipped."""
import os
import shutil
import subprocess
import sys

import pytest

from tests.browser import MISSING
from tests.conftest import ROOT

SCRIPT = ROOT / 'tests' / 'install_browser.sh'


def fake_bin(tmp_path, uid, apt=True, installed=()):
    """A PATH directory with a fake ``id`` (``uid``), ``apt-get`` (logs its
    arguments and DEBIAN_FRONTEND, and "installs" fake browsers) and the
    programs named in ``installed``."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()

    def script(name, body):
        (bin_dir / name).write_text(f'#!{shutil.which("bash")}\n{body}\n')
        (bin_dir / name).chmod(0o755)

    script('id', f'echo {uid}')
    if apt:
        script('apt-get', f'echo "$* [$DEBIAN_FRONTEND]" >> {tmp_path}/apt.log'
               f'\n[[ "$1" != install ]] || for p in chromium chromedriver; '
               f'do printf "#!/bin/sh\\n" > {bin_dir}/$p; '
               f'{shutil.which("chmod")} +x {bin_dir}/$p; done')
    for name in installed:
        script(name, 'exit 0')
    return bin_dir


def install(tmp_path, bin_dir):
    proc = subprocess.run([shutil.which('bash'), str(SCRIPT)],
                          capture_output=True, text=True,
                          env={'PATH': str(bin_dir)}, timeout=60)
    log = tmp_path / 'apt.log'
    return proc, log.read_text().splitlines() if log.exists() else []


def test_root_installs_with_apt_get(tmp_path):
    bin_dir = fake_bin(tmp_path, uid=0)
    proc, apt = install(tmp_path, bin_dir)
    assert proc.returncode == 0, proc.stderr
    assert apt == ['update -qq []', 'install -y -qq chromium chromium-driver '
                   '[noninteractive]']
    assert (bin_dir / 'chromedriver').exists()
    # once installed, nothing more happens
    (tmp_path / 'apt.log').unlink()
    proc, apt = install(tmp_path, bin_dir)
    assert proc.returncode == 0 and apt == [] and proc.stderr == ''


@pytest.mark.parametrize('uid,apt', [(1000, True), (0, False)])
def test_otherwise_one_line_names_the_command(tmp_path, uid, apt):
    proc, calls = install(tmp_path, fake_bin(tmp_path, uid, apt))
    assert proc.returncode == 1 and calls == []
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and 'missing' in lines[0]
    assert lines[0].endswith('apt-get update && apt-get install -y chromium '
                             'chromium-driver')


def test_present_browser_needs_nothing(tmp_path):
    bin_dir = fake_bin(tmp_path, 1000, installed=('chromium', 'chromedriver'))
    proc, calls = install(tmp_path, bin_dir)
    assert proc.returncode == 0 and calls == [] and proc.stderr == ''


@pytest.mark.parametrize('installed', [False, True])
def test_browser_fixture_errors_when_missing(tmp_path, installed):
    """A test using the fixture: an ERROR with the message (never a skip)
    on a PATH without chromium; it passes with both on PATH."""
    (tmp_path / 'test_uses_browser.py').write_text(
        'from tests.browser import browser  # noqa: F401\n\n'
        'def test_page(browser):\n    assert browser\n')
    bin_dir = fake_bin(tmp_path, 1000, installed=(
        ('chromium', 'chromedriver') if installed else ()))
    env = {**os.environ, 'PATH': str(bin_dir),
           'PYTHONPATH': str(ROOT)}
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', '-p', 'no:cacheprovider', '-p',
         'no:xdist', '-rA', str(tmp_path / 'test_uses_browser.py')],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    summary = proc.stdout.strip().splitlines()[-1]
    if installed:
        assert proc.returncode == 0 and '1 passed' in summary, proc.stdout
    else:
        assert proc.returncode == 1, proc.stdout
        assert '1 error' in summary and 'skipped' not in summary, summary
        assert MISSING in proc.stdout
