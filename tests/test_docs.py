"""The README stays a newcomer's page, its links resolve, and the flag
reference is the scripts' own parsers."""
import re
import subprocess
import sys

from tests.conftest import ROOT, script_env


def test_flag_reference_is_up_to_date():
    proc = subprocess.run([sys.executable, str(ROOT / 'docs' / 'make_flags.py'),
                           '--check'], capture_output=True, text=True,
                          env=script_env())
    assert proc.returncode == 0, proc.stderr


def test_readme_is_short_and_its_links_resolve():
    readme = (ROOT / 'README.md').read_text()
    assert len(readme.splitlines()) <= 250
    targets = re.findall(r'\]\(([^)#]+)(?:#[^)]*)?\)', readme)
    local = [t for t in targets if not t.startswith('http')]
    assert {'docs/flags.md', 'docs/training.md', 'docs/deploy.md',
            'docs/library.md', 'benchmarks/RESULTS.md'} <= set(local)
    assert [t for t in local if not (ROOT / t).exists()] == []
