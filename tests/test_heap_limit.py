"""HeapLimit: prediction over files of many lengths must not grow the
process. Reproduces the mechanism (freed blocks kept in a fragmented glibc
heap) with plain Python allocations and checks the limit gives them back."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from paddlespeech.cls import runtime
from paddlespeech.cls.runtime import HeapLimit, rss_mb

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    runtime._malloc_trim() is None, reason='needs glibc (malloc_trim)')

# Run in a fresh interpreter: the heap of the test process depends on
# what ran before. Allocates 300 MB in 100 kB blocks (heap, not mmap),
# frees 9 in 10 (the survivors pin the heap, so the freed memory stays
# resident), then lets HeapLimit act, after the recipe's malloc settings
# (keep_large_buffers) as every script makes them.
SCENARIO = """
from paddlespeech.cls.runtime import HeapLimit, prepare_process, rss_mb
prepare_process()
limit = HeapLimit(slack_mb=50)
limit.check()
before = rss_mb()
blocks = [bytearray(b'\\1' * 100 * 1024) for _ in range(3072)]
keep = blocks[::10]
del blocks
grown = rss_mb()
limit.check()
print(before, grown, rss_mb(), limit.trims)
"""


def test_rss_mb_matches_proc_status():
    with open('/proc/self/status') as f:
        status = next(int(l.split()[1]) / 1024 for l in f
                      if l.startswith('VmRSS:'))
    assert abs(rss_mb() - status) < 5


def test_limit_returns_fragmented_heap_memory():
    out = subprocess.run([sys.executable, '-c', SCENARIO], check=True,
                         capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, 'PYTHONPATH': str(ROOT)}).stdout
    before, grown, after, trims = map(float, out.split())
    assert grown - before > 150, 'the freed blocks should still be resident'
    assert trims == 1
    assert grown - after > 150


def test_no_trim_within_slack(monkeypatch):
    readings = iter([100.0, 130.0, 149.0, 151.0, 120.0, 160.0, 171.0, 90.0])
    monkeypatch.setattr(runtime, 'rss_mb', lambda: next(readings))
    limit = HeapLimit(slack_mb=50)
    calls = []
    limit.trim = calls.append
    for _ in range(3):
        limit.check()  # 100 (base), 130, 149: within 50 MB
    assert calls == []
    limit.check()  # 151 > 150: trim, new base 120
    assert calls == [0] and limit.base == 120.0
    limit.check()  # 160: within
    limit.check()  # 171 > 170: trim, new base 90
    assert calls == [0, 0] and limit.base == 90.0


LARGE_BUFFER = """
from paddlespeech.cls.runtime import prepare_process, rss_mb
prepare_process()
before = rss_mb()
buffer = bytearray(b'\\1' * (64 << 20))
del buffer
print(rss_mb() - before)
"""


@pytest.mark.parametrize('env, kept', [({}, True),
                                       ({'MALLOC_MMAP_MAX_': '65536'}, False)])
def test_large_buffers_stay_in_the_heap(env, kept):
    """keep_large_buffers (applied by prepare_process unless
    MALLOC_MMAP_MAX_ is set): a freed 64 MB block stays resident for the
    next batch instead of going back to the kernel and being faulted in
    again."""
    out = subprocess.run([sys.executable, '-c', LARGE_BUFFER], check=True,
                         capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, 'PYTHONPATH': str(ROOT), **env})
    resident_after_free = float(out.stdout)
    assert (resident_after_free > 60) == kept, resident_after_free
