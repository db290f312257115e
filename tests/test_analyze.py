"""analyze.py: a long recording's events equal detect.py's and its window
scores the export's on the same windows; bad files listed with their
reasons while the others are analysed; 1 and 2 workers give the same
tables; runs killed with SIGKILL (or stopped with Ctrl-C) and resumed
equal an uninterrupted one; changed files are redone; other flags into
the same directory are refused; the queries of docs/analyze.md run."""
import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

pa = pytest.importorskip('pyarrow')
import pyarrow.dataset as ds  # noqa: E402

from tests.conftest import ROOT, SCRIPTS, run_script, script_env  # noqa: E402
from tests.test_bad_inputs import corpus, tone  # noqa: E402,F401
from paddlespeech.cls.datasets.synthetic import long_recording  # noqa: E402

TABLES = ('files', 'windows', 'events')


@pytest.fixture(scope='module')
def export_dir(trained_checkpoint, tmp_path_factory):
    """The CNN6 of ``trained_checkpoint`` exported (3 classes, 0.5 s)."""
    from paddlespeech.cls.export import export
    return export(trained_checkpoint,
                  tmp_path_factory.mktemp('analyze') / 'export')


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    """24 short recordings of tones and noise in two subfolders, a hidden
    file and a text file."""
    d = tmp_path_factory.mktemp('archive')
    rng = np.random.default_rng(1)
    for i in range(24):
        sr = (16000, 22050, 32000, 44100)[i % 4]
        seconds = 0.3 + 0.1 * (i % 9)
        t = np.arange(int(seconds * sr)) / sr
        x = 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + \
            0.05 * (i % 3) * rng.standard_normal(len(t))
        path = d / f'site{i % 2}' / f'rec_{i:02d}.wav'
        path.parent.mkdir(exist_ok=True)
        sf.write(path, x, sr, subtype='PCM_16')
    sf.write(d / 'site0' / '.hidden.wav', tone(0.5, 16000), 16000)
    (d / 'notes.txt').write_text('not audio\n')
    return d


def analyze(*args, check=True, **kw):
    proc = run_script('analyze.py', '--device', 'cpu', '--cpu_threads', 1,
                      '--quiet', 'true', *args, check=False, **kw)
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr
    return proc


def tables(out):
    """The three tables as sorted lists of row dicts (floats rounded to
    what a rerun can reproduce: the exported graph is deterministic)."""
    keys = {'files': ('path',), 'windows': ('path', 'start'),
            'events': ('path', 'onset', 'label')}
    got = {}
    for t in TABLES:
        rows = ds.dataset(out / t, format='parquet').to_table().to_pylist()
        got[t] = sorted(rows, key=lambda r: tuple(r[k] for k in keys[t]))
    return got


def no_duplicates(got):
    assert len({r['path'] for r in got['files']}) == len(got['files'])
    assert len({(r['path'], r['start']) for r in got['windows']}) == \
        len(got['windows'])


# ------------------------------------------ equal to detect.py and the export

def test_long_recording_equals_detect_and_the_export(export_dir, tmp_path):
    wav = tmp_path / 'long.wav'
    long_recording(wav, seconds=30)
    flags = ('--threshold', 0.4, '--hop_seconds', 0.25,
             '--min_event_seconds', 0.5, '--merge_gap_seconds', 0.3)
    out = tmp_path / 'out'
    proc = analyze('--model_dir', export_dir, '--input', wav,
                   '--output_dir', out, '--scores', 'all', '--top_k', 2,
                   *flags)
    assert '1 files analysed, 0 failed' in proc.stdout
    run_script('detect.py', '--model_dir', export_dir, '--wav', wav,
               '--output_dir', tmp_path / 'detect', '--plot', 'false',
               '--device', 'cpu', '--cpu_threads', 1, *flags)
    with open(tmp_path / 'detect' / 'long.events.csv') as f:
        expected = list(csv.DictReader(f))
    got = tables(out)
    events = sorted(got['events'], key=lambda e: (e['onset'], e['offset'],
                                                  e['label']))
    assert len(events) == len(expected) > 3
    for e, want in zip(events, expected):
        assert e['label'] == want['label']
        assert e['path'] == str(wav) == want['filename']
        assert f'{e["onset"]:.3f}' == want['onset']
        assert f'{e["offset"]:.3f}' == want['offset']
        assert f'{e["score"]:.4f}' == want['score']

    from paddlespeech.cls.audio import Windowing
    from paddlespeech.cls.inference import Predictor
    predictor = Predictor(export_dir, 'cpu', 1)
    sr = predictor.feature.sample_rate
    waves = [w for w, _ in Windowing(0.5, 0.25).windows(wav, sr)]
    want = predictor.scores(waves)
    windows = got['windows']
    assert len(windows) == len(waves) == 119  # 1 + (30 - 0.5) / 0.25
    scores = np.array([w['scores'] for w in windows])
    np.testing.assert_allclose(scores, want, atol=1e-5)
    np.testing.assert_allclose([w['start'] for w in windows],
                               np.arange(119) * 0.25)
    assert windows[-1]['end'] == 30.0
    labels = json.loads((out / 'run.json').read_text())['labels']
    best = np.argsort(-want, axis=1, kind='stable')[:, :2]
    assert [w['top_labels'] for w in windows] == \
        [[labels[i] for i in row] for row in best]
    np.testing.assert_allclose([w['top_scores'] for w in windows],
                               np.take_along_axis(want, best, 1), atol=1e-5)
    files = got['files']
    assert files == [{
        'path': str(wav), 'size': wav.stat().st_size,
        'mtime': wav.stat().st_mtime, 'duration': 30.0, 'sample_rate': 44100,
        'channels': 1, 'status': 'ok', 'error': None, 'windows': 119,
        'seconds': 30.0}]
    summary = list(csv.DictReader(open(out / 'summary.csv')))
    assert [r['label'] for r in summary] == labels
    for r in summary:
        mine = [e for e in events if e['label'] == r['label']]
        assert int(r['events']) == len(mine)
        assert float(r['seconds']) == pytest.approx(
            sum(e['offset'] - e['onset'] for e in mine))


# ------------------------------------------------ bad files, 1 and 2 workers

def test_bad_files_are_listed_and_workers_agree(export_dir, corpus,
                                                tmp_path):
    good, bad = corpus
    inputs = [*good, *bad]
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f'w{workers}'
        proc = analyze('--model_dir', export_dir, '--input', *inputs,
                       '--output_dir', out, '--workers', workers,
                       '--part_files', 5, check=False)
        assert proc.returncode == 1, proc.stderr
        assert f'{len(good)} files analysed, {len(bad)} failed' in \
            proc.stdout
        runs[workers] = tables(out)
    assert runs[1] == runs[2]
    files = {r['path']: r for r in runs[1]['files']}
    assert sorted(files) == sorted(os.path.abspath(p) for p in inputs)
    for path, reason in bad.items():
        row = files[os.path.abspath(path)]
        assert row['status'] == 'error' and reason in row['error'], row
        assert '\n' not in row['error'] and str(path) not in row['error']
        assert row['windows'] == 0
    for path in good:
        row = files[os.path.abspath(path)]
        assert row['status'] == 'ok' and row['error'] is None, row
        assert row['windows'] >= 1
        assert row['seconds'] == pytest.approx(row['duration'], abs=1e-3)
    per_file = {}
    for w in runs[1]['windows']:
        per_file[w['path']] = per_file.get(w['path'], 0) + 1
    assert per_file == {p: r['windows'] for p, r in files.items()
                        if r['windows']}
    assert len(list((tmp_path / 'w1' / 'files').glob('*.parquet'))) == \
        -(-len(inputs) // 5)
    # the same command again: nothing to do, the failures still counted
    proc = analyze('--model_dir', export_dir, '--input', *inputs,
                   '--output_dir', tmp_path / 'w1', check=False)
    assert proc.returncode == 1
    assert (f'0 files analysed, 0 failed, {len(inputs)} already done, '
            f'{len(bad)} failed in all') in proc.stdout
    assert tables(tmp_path / 'w1') == runs[1]


# ------------------------------------------------------------------ resume

def wait_for_parts(out, parts, proc, timeout=120):
    journal = out / '.analyze' / 'journal.jsonl'
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if journal.is_file() and \
                journal.read_text().count('"part"') >= parts:
            return
        time.sleep(0.02)


def start(*args):
    return subprocess.Popen(
        [sys.executable, str(SCRIPTS / 'analyze.py'), '--device', 'cpu',
         '--cpu_threads', '1', '--quiet', 'true', *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=script_env())


@pytest.mark.slow
def test_killed_and_resumed_equals_uninterrupted(export_dir, folder,
                                                  tmp_path):
    """SIGKILL at five random points (after 1-10 committed parts, then a
    random fraction of a part later), each time resumed by the same
    command; then a Ctrl-C, which commits and exits 130."""
    args = ('--model_dir', export_dir, '--input', folder, '--part_files', 2)
    analyze(*args, '--output_dir', tmp_path / 'whole')
    whole = tables(tmp_path / 'whole')
    assert len(whole['files']) == 24
    out = tmp_path / 'killed'
    rng = random.Random(0)
    kills = 0
    for _ in range(5):
        proc = start(*args, '--output_dir', out)
        wait_for_parts(out, rng.randint(1, 10), proc)
        time.sleep(rng.uniform(0, 0.3))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.communicate()
        got = tables(out)
        no_duplicates(got)
        assert [r for r in got['files'] if r not in whole['files']] == []
    assert kills >= 3
    analyze(*args, '--output_dir', out)
    got = tables(out)
    no_duplicates(got)
    assert got == whole

    stopped = tmp_path / 'stopped'
    proc = start(*args, '--output_dir', stopped)
    wait_for_parts(stopped, 2, proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert 'run the same command to resume' in stderr
    done = tables(stopped)
    assert 4 <= len(done['files']) < 24
    proc = analyze(*args, '--output_dir', stopped)
    assert f'{24 - len(done["files"])} files analysed' in proc.stdout
    assert tables(stopped) == whole
    staging = out / '.analyze' / 'staging'
    assert list(staging.iterdir()) == []


def test_changed_files_are_redone_and_other_flags_refused(export_dir,
                                                          folder, tmp_path):
    archive = tmp_path / 'archive'
    archive.mkdir()
    for name in ('rec_00.wav', 'rec_02.wav', 'rec_04.wav'):
        (archive / name).write_bytes((folder / 'site0' / name).read_bytes())
    out = tmp_path / 'out'
    args = ('--model_dir', export_dir, '--input', archive, '--output_dir',
            out, '--part_files', 1)
    analyze(*args)
    before = tables(out)
    changed = archive / 'rec_02.wav'
    sf.write(changed, tone(2.0, 16000), 16000)
    proc = analyze(*args)
    assert ('1 files analysed, 0 failed, 2 already done, 1 changed and '
            'redone') in proc.stdout
    after = tables(out)
    no_duplicates(after)
    row = next(r for r in after['files'] if r['path'] == str(changed))
    assert (row['duration'], row['size']) == (2.0, changed.stat().st_size)
    assert row['windows'] == 7  # 2 s in 0.5 s windows every 0.25 s
    assert sum(w['path'] == str(changed) for w in after['windows']) == 7
    for t in TABLES:
        assert [r for r in after[t] if r['path'] != str(changed)] == \
            [r for r in before[t] if r['path'] != str(changed)]
    # a fresh run over the changed archive gives the same tables
    analyze('--model_dir', export_dir, '--input', archive, '--output_dir',
            tmp_path / 'fresh')
    assert tables(tmp_path / 'fresh') == after

    for extra in (('--threshold', 0.3), ('--hop_seconds', 0.1),
                  ('--scores', 'all')):
        proc = analyze(*args, *extra, check=False)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f'error: {out} holds '
                                                       f'results of other')
    proc = run_script('analyze.py', '--checkpoint', export_dir.parent /
                      'nothing.pdparams', '--input', archive, '--output_dir',
                      out, check=False)
    assert proc.returncode == 2
    assert re.match(rf'error: {re.escape(str(out))} holds results of other '
                    r'settings \(model: checkpoint', proc.stderr)
    assert tables(out) == after


def test_folder_inputs_patterns_and_lists(export_dir, folder, tmp_path):
    listing = tmp_path / 'files.txt'
    listing.write_text(f'# two files\n{folder}/site0/rec_00.wav\n'
                       f'{folder}/site1/rec_01.wav\n')
    proc = analyze('--model_dir', export_dir, '--input', listing,
                   f'{folder}/site1/rec_1*.wav', f'{folder}/**/rec_2?.wav',
                   '--output_dir', tmp_path / 'out')
    paths = [r['path'] for r in tables(tmp_path / 'out')['files']]
    want = sorted({f'{folder}/site0/rec_00.wav', f'{folder}/site1/rec_01.wav',
                   *(f'{folder}/site1/rec_{i}.wav' for i in (11, 13, 15, 17,
                                                             19)),
                   *(f'{folder}/site{i % 2}/rec_{i}.wav' for i in
                     range(20, 24))})
    assert paths == want
    assert f'{len(want)} files analysed' in proc.stdout
    # without --quiet, into a log: the error lines, no progress redraws
    proc = run_script('analyze.py', '--model_dir', export_dir, '--input',
                      folder, tmp_path / 'gone.wav', '--output_dir',
                      tmp_path / 'all', '--device', 'cpu', '--cpu_threads',
                      1, check=False)
    assert proc.returncode == 1
    assert ('24 files analysed, 1 failed, 0 already done, skipped 1 '
            'hidden, 1 not audio') in proc.stdout
    assert proc.stderr == f'error: {tmp_path / "gone.wav"}: no such file\n'


def test_embeddings_are_the_exports_in_float16(export_dir, folder, tmp_path):
    from paddlespeech.cls.audio import Windowing
    from paddlespeech.cls.inference import Predictor
    paths = [folder / 'site0' / f'rec_{i:02d}.wav' for i in (0, 8)]
    out = tmp_path / 'out'
    analyze('--model_dir', export_dir, '--input', *paths, '--output_dir',
            out, '--embeddings', 'true', '--scores', 'all')
    table = ds.dataset(out / 'windows', format='parquet').to_table()
    assert table.schema.field('embedding').type == pa.list_(pa.float16())
    predictor = Predictor(export_dir, 'cpu', 1)
    rows = table.to_pylist()
    for path in paths:
        waves = [w for w, _ in Windowing(0.5, 0.25).windows(path, 32000)]
        mine = [r for r in rows if r['path'] == str(path)]
        assert len(mine) == len(waves)
        want = predictor.embeddings(waves)
        assert want.shape[1] == 512
        got = np.array([r['embedding'] for r in mine], np.float32)
        np.testing.assert_allclose(got, want.astype(np.float16), rtol=0,
                                   atol=1e-6)
        np.testing.assert_allclose([r['scores'] for r in mine],
                                   predictor.scores(waves), atol=1e-5)


def test_documented_queries_run(export_dir, folder, corpus, tmp_path,
                                monkeypatch, capsys):
    duckdb = pytest.importorskip('duckdb')
    pytest.importorskip('pandas')
    text = (ROOT / 'docs' / 'analyze.md').read_text()
    blocks = re.findall(r'```(python|sql)\n(.*?)```', text, re.S)
    assert [k for k, _ in blocks].count('sql') >= 4
    assert [k for k, _ in blocks].count('python') >= 3
    out = tmp_path / 'exp' / 'demo' / 'analysis'
    good, bad = corpus
    analyze('--model_dir', export_dir, '--input', folder, *bad,
            '--output_dir', out, '--scores', 'all', '--embeddings', 'true',
            '--threshold', 0.4, check=False)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for kind, code in blocks:
        if kind == 'python':
            exec(compile(code, 'docs/analyze.md', 'exec'), namespace)
            printed = capsys.readouterr().out
            assert printed.strip() and 'Empty DataFrame' not in printed
        else:
            rows = duckdb.sql(code).fetchall()
            assert rows, code
    assert len(namespace['files']) == 24 + len(bad)
    assert sorted(namespace['files'].loc[namespace['files'].status ==
                                         'error', 'path']) == \
        sorted(os.path.abspath(p) for p in bad)
    assert duckdb.sql(blocks[-4][1]).fetchall() == [
        ('error', len(bad), 0.0),
        ('ok', 24, pytest.approx(namespace['files'].seconds.sum() / 3600))]


@pytest.mark.slow
def test_ray_cluster_of_two_nodes_equals_local(export_dir, corpus, tmp_path,
                                               monkeypatch):
    """A head and a worker node on 127.0.0.1, one CPU each, two actors:
    the same tables as the local engine, bad files included."""
    # every Ray process on the loopback interface (ray_engine.py)
    monkeypatch.setenv('RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER', '0')
    cluster_utils = pytest.importorskip('ray.cluster_utils')
    good, bad = corpus
    inputs = [*good, *bad]
    analyze('--model_dir', export_dir, '--input', *inputs, '--output_dir',
            tmp_path / 'local', check=False)
    cluster = cluster_utils.Cluster(
        initialize_head=True,
        head_node_args={'num_cpus': 1, 'node_ip_address': '127.0.0.1'})
    try:
        cluster.add_node(num_cpus=1, node_ip_address='127.0.0.1')
        cluster.wait_for_nodes()
        proc = analyze('--model_dir', export_dir, '--input', *inputs,
                       '--output_dir', tmp_path / 'ray', '--engine', 'ray',
                       '--address', cluster.address, '--workers', 2,
                       '--cpus_per_worker', 1, check=False, timeout=240)
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert f'{len(good)} files analysed, {len(bad)} failed' in \
            proc.stdout
    finally:
        cluster.shutdown()
    assert tables(tmp_path / 'ray') == tables(tmp_path / 'local')


RECORD_MODULES = """
import atexit, json, runpy, sys
from pathlib import Path
record, hide, script = sys.argv[1:4]
for name in filter(None, hide.split(',')):
    sys.modules[name] = None  # as if not installed
atexit.register(lambda: Path(record).write_text(json.dumps(sorted(
    m for m, v in sys.modules.items() if v is not None))))
sys.argv = sys.argv[3:]
runpy.run_path(script, run_name='__main__')
"""


def test_local_engine_runs_without_ray(export_dir, folder,
                                                  tmp_path):
    """The local engine never imports Ray; without Ray, --engine ray says
    in one line what to install."""
    def run(record, hide, *args):
        return subprocess.run(
            [sys.executable, '-c', RECORD_MODULES, str(record), hide,
             str(SCRIPTS / 'analyze.py'), '--model_dir', str(export_dir),
             '--input', str(folder / 'site0' / 'rec_00.wav'), '--device',
             'cpu', *map(str, args)], capture_output=True, text=True,
            env=script_env(), timeout=300)

    proc = run(tmp_path / 'local.json', '', '--output_dir', tmp_path / 'a')
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = {m.split('.')[0] for m in
                json.loads((tmp_path / 'local.json').read_text())}
    assert 'pyarrow' in imported and 'ray' not in imported
    proc = run(tmp_path / 'ray.json', 'ray', '--output_dir', tmp_path / 'b',
               '--engine', 'ray')
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        'error: --engine ray needs Ray Data: pip install '
        '"paddlespeech-cls[ray]" (or -r requirements-ray.txt)']


# ------------------------------------------------ batches across files, reader

def analyzer_of(export_dir, batch_size, **analyze):
    from paddlespeech.cls import open_model
    from paddlespeech.cls.analysis import AnalyzeConfig
    from paddlespeech.cls.analysis.analyzer import FileAnalyzer, Settings
    from paddlespeech.cls.events import DetectConfig
    model = open_model(model_dir=export_dir, device='cpu', cpu_threads=1)
    return FileAnalyzer(model, Settings(DetectConfig(hop_seconds=0.25),
                                        AnalyzeConfig(**analyze),
                                        batch_size))


def same_results(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.file == w.file
        assert g.mtime_ns == w.mtime_ns
        np.testing.assert_array_equal(g.start, w.start)
        np.testing.assert_array_equal(g.top_index, w.top_index)
        np.testing.assert_allclose(g.top_scores, w.top_scores, atol=1e-5)
        assert [e[:3] for e in g.events] == [e[:3] for e in w.events]


def test_files_batched_together_equal_each_file_alone(export_dir, folder,
                                                      corpus):
    """Windows of successive files share the model's batches (fewer runs
    than files), and each file's rows equal those of the file analysed
    on its own, one window per run; read in a reader process, the
    same."""
    from paddlespeech.cls.analysis.reading import ReaderProcess
    good, bad = corpus
    paths = [*sorted(folder.rglob('rec_*.wav'))[:10], *bad, *good]
    together = analyzer_of(export_dir, 8, embeddings=True)
    alone = analyzer_of(export_dir, 1, embeddings=True)
    runs = []
    both = together.model.scores_and_embeddings

    def counted(inputs):
        runs.append(len(inputs.inputs))
        return both(inputs)

    together.model.scores_and_embeddings = counted
    got = list(together.results(paths))
    want = [alone(p) for p in paths]
    same_results(got, want)
    windows = sum(r.file['windows'] for r in want)
    assert windows > len(paths) // 2 and sum(runs) == windows
    assert len(runs) == -(-windows // 8) and max(runs) == 8
    for g, w in zip(got, want):
        if w.ok:
            np.testing.assert_allclose(g.embedding.astype(np.float32),
                                       w.embedding.astype(np.float32),
                                       rtol=2e-3, atol=2e-3)
    reader = ReaderProcess()
    same_results(list(together.results(
        paths, reader.read(paths, *together.reader_args()))), want)
    assert not reader.process.is_alive()


def kill_when_reading(reader_process, target, stop, signum=signal.SIGSEGV):
    """Sends ``signum`` to the reader whenever it has ``target`` open,
    until ``stop`` is set."""
    import threading

    def watch():
        while not stop.is_set():
            pid = reader_process.process.pid
            try:
                if any(os.path.realpath(f'/proc/{pid}/fd/{fd}') == target
                       for fd in os.listdir(f'/proc/{pid}/fd')):
                    os.kill(pid, signum)
            except OSError:
                pass
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_file_that_kills_the_reader_is_an_error_row(export_dir, folder,
                                                      tmp_path):
    """The reader process dies with SIGSEGV while it reads one file (a
    minute long, so that it is caught with the file open). It is started
    again, finds the file to blame, and every other file is analysed as
    in an undisturbed run."""
    import threading
    from paddlespeech.cls.analysis.reading import ReaderProcess
    fatal = tmp_path / 'fatal.wav'
    sf.write(fatal, tone(60.0, 44100), 44100, subtype='PCM_16')
    good = sorted(folder.rglob('rec_*.wav'))[:9]
    paths = [*good[:5], fatal, *good[5:]]
    analyzer = analyzer_of(export_dir, 4)
    want = list(analyzer.results(good))
    reader, stop = ReaderProcess(), threading.Event()
    watcher = kill_when_reading(reader, str(fatal), stop)
    try:
        got = list(analyzer.results(
            paths, reader.read(paths, *analyzer.reader_args())))
    finally:
        stop.set()
        watcher.join()
    assert reader.restarts == 2  # the first death, then the careful one
    row = got.pop(5).file
    assert row['status'] == 'error' and row['path'] == str(fatal)
    assert row['error'] == ('the reader process died reading it (exit -11):'
                            ' a crash of the decoder on damaged data')
    same_results(got, want)


def test_an_address_where_no_ray_answers_is_one_line(export_dir, folder,
                                                     tmp_path):
    """--address HOST:PORT with nothing listening: one line at once, not
    Ray's minutes of retries."""
    import socket
    pytest.importorskip('ray')
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    t = time.monotonic()
    proc = analyze('--model_dir', export_dir, '--input', folder / 'site0',
                   '--output_dir', tmp_path / 'out', '--engine', 'ray',
                   '--address', f'127.0.0.1:{port}', check=False)
    assert time.monotonic() - t < 60
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f'error: --address 127.0.0.1:{port}: no Ray cluster answers there '
        f'(Connection refused); start one with ray start --head, or pass '
        f'--address auto on one of its nodes']
