"""runtime: process preparation, and stdout_silenced on several threads (a
service runs one predictor per inference thread, and their silenced runs
overlap)."""
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from paddlespeech.cls.runtime import amd_cpu, stdout_silenced

ROOT = Path(__file__).resolve().parents[1]


def test_overlapping_silenced_runs_restore_stdout(capfd):
    """A enters, B enters, A leaves while B still runs, then B leaves:
    output stays silenced until the last one leaves and is visible after."""
    b_inside, a_left, checked = (threading.Event() for _ in range(3))

    def a():
        with stdout_silenced():
            b_inside.wait(5)
        a_left.set()

    def b():
        with stdout_silenced():
            b_inside.set()
            a_left.wait(5)
            os.write(1, b'while B runs\n')
            checked.set()

    threads = [threading.Thread(target=f) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert checked.is_set()
    os.write(1, b'after both\n')
    assert capfd.readouterr().out == 'after both\n'


PREPARED = ('MKL_DEBUG_CPU_TYPE', 'GLOG_minloglevel', 'OPENBLAS_NUM_THREADS')
PROBE = """
import json, os, sys
import paddlespeech.cls.audio, paddlespeech.cls.config
seen = [{k: os.environ.get(k) for k in %r}]
from paddlespeech.cls.runtime import prepare_process
prepare_process()
seen.append({k: os.environ.get(k) for k in %r})
print(json.dumps([seen, 'numpy' in sys.modules, 'paddle' in sys.modules]))
""" % (PREPARED, PREPARED)


def probe(**env):
    clean = {k: v for k, v in os.environ.items() if k not in PREPARED}
    out = subprocess.run([sys.executable, '-c', PROBE], check=True,
                         capture_output=True, text=True,
                         env={**clean, 'PYTHONPATH': str(ROOT), **env})
    return json.loads(out.stdout)


def test_importing_the_library_prepares_nothing_the_call_does():
    """Library modules leave the process alone; prepare_process sets one
    OpenBLAS thread (numpy is imported by then here, so it does not),
    quiet glog and, on AMD only, the MKL hint, before Paddle loads."""
    (before, after), numpy_loaded, paddle_loaded = probe()
    assert before == dict.fromkeys(PREPARED)
    assert not paddle_loaded
    assert after['GLOG_minloglevel'] == '2'
    assert after['MKL_DEBUG_CPU_TYPE'] == ('5' if amd_cpu() else None)
    assert after['OPENBLAS_NUM_THREADS'] == (None if numpy_loaded else '1')


def test_prepare_process_yields_to_the_environment():
    (_, after), _, _ = probe(GLOG_minloglevel='0', MKL_DEBUG_CPU_TYPE='4')
    assert after['GLOG_minloglevel'] == '0'
    assert after['MKL_DEBUG_CPU_TYPE'] == '4'


def test_openblas_threads_set_before_numpy_loads():
    code = ('import os; from paddlespeech.cls.runtime import prepare_process;'
            'prepare_process(); import numpy; '
            'print(os.environ["OPENBLAS_NUM_THREADS"])')
    clean = {k: v for k, v in os.environ.items() if k not in PREPARED}
    out = subprocess.run([sys.executable, '-c', code], check=True,
                         capture_output=True, text=True,
                         env={**clean, 'PYTHONPATH': str(ROOT)})
    assert out.stdout.strip() == '1'
