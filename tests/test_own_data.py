"""Your own sounds: folder-per-class and manifest layouts,
assigned stratified folds and their folds file, clips of any format and
length (``clip_seconds``), class-balanced sampling, bad-data messages,
label names as written. References are computed here by hand: folds and
class shares counted, windows and averages worked out, the same clips
rewritten in ESC-50 layout."""
import contextlib
import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from tests.conftest import (ROOT, conf_with, make_synthetic, run_script,
                            script_env)
from paddlespeech.cls import atomic, prediction
from paddlespeech.cls.audio import Windowing
from paddlespeech.cls.config import load_config
from paddlespeech.cls.datasets import (ClipDataset, ClipWindows,
                                       DatasetError, load_table)
from paddlespeech.cls.datasets.folds import assign_folds
from paddlespeech.cls.errors import UserError
from paddlespeech.cls.features import FeatureConfig, NumpyLogMel
from paddlespeech.cls.prediction import predict_files
from paddlespeech.cls.runtime import run
from paddlespeech.cls.task import Task
from paddlespeech.cls.checkpoint import read_metrics
from paddlespeech.cls.datasets.sampling import BalancedBatchSampler
from paddlespeech.cls.trainer import Trainer

TINY = dict(classes=3, clips_per_fold=2, folds=5, seconds=0.5)


def config(data_dir, ckpt, **over):
    """conf/demo.yaml (CNN6 from scratch) made quick."""
    return load_config(ROOT / 'conf' / 'demo.yaml', {
        'data_dir': str(data_dir), 'checkpoint_dir': str(ckpt),
        'epochs': 2, 'save_freq': 1, 'batch_size': 8, 'device': 'cpu',
        'cpu_threads': 1, 'log_freq': 1000, **over})


def table_of(data_dir, ckpt, **over):
    """The clip table training with :func:`config` reads."""
    cfg = config(data_dir, ckpt, **over)
    return load_table(cfg.data, cfg.train)


def train(data_dir, ckpt, **over):
    """Train in this process; the metrics.jsonl records and stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert Trainer(config(data_dir, ckpt, **over)).fit() == 0
    return read_metrics(Path(ckpt) / 'metrics.jsonl'), out.getvalue()


def as_esc50(src, rows, dst):
    """The clips ``rows = [(path relative to src, label, fold)]`` copied
    into ESC-50 layout at ``dst`` in that order, targets numbered in
    sorted label order (the order the other layouts give classes)."""
    names = sorted({label for _, label, _ in rows})
    (dst / 'audio').mkdir(parents=True)
    (dst / 'meta').mkdir()
    lines = ['filename,fold,target,category']
    for rel, label, fold in rows:
        shutil.copy(src / rel, dst / 'audio' / Path(rel).name)
        lines.append(f'{Path(rel).name},{fold},{names.index(label)},{label}')
    (dst / 'meta' / 'esc50.csv').write_text('\n'.join(lines) + '\n')
    return dst


def folder_rows(root):
    """``(path, label, fold)`` of a generated folder layout, in the
    documented order (classes sorted, then paths within a class); the
    fold is the generator's, the first field of the file name."""
    return [(f'{d.name}/{f.name}', d.name, int(f.name.split('-')[0]))
            for d in sorted(root.iterdir()) if d.is_dir()
            for f in sorted(d.iterdir())]


def write_folds(root, rows):
    (root / '.folds.csv').write_text(
        'path,fold\n' + ''.join(f'{p},{f}\n' for p, _, f in rows))


def train_errors(capsys, **overrides):
    """``Trainer(cfg).fit()`` under ``runtime.run``, as train.py runs it,
    in this process: exit status and stderr."""
    def main(argv):
        cfg = load_config(None, {'device': 'cpu', **{
            k: str(v) for k, v in overrides.items()}})
        return Trainer(cfg).fit()

    with pytest.raises(SystemExit) as e:
        run(main, [])
    return e.value.code, capsys.readouterr().err


def assert_one_line(code, err, *names):
    assert code == 2, err
    assert err.startswith('error: ') and err.count('\n') == 1, err
    for name in names:
        assert str(name) in err, (name, err)


# ------------------------------------------------------------------ layouts

@pytest.mark.parametrize('layout', ['folder', 'manifest'])
def test_layout_trains_like_esc50_layout_of_same_clips(layout, tmp_path):
    data = make_synthetic(tmp_path / layout, layout=layout, **TINY)
    esc = make_synthetic(tmp_path / 'esc50', **TINY)
    # the same clips as the ESC-50-layout demo set
    assert (data / 'high_beeps' / '2-2010-A-1.wav').read_bytes() == \
        (esc / 'audio' / '2-2010-A-1.wav').read_bytes()
    if layout == 'folder':
        rows = folder_rows(data)
        write_folds(data, rows)  # the ESC-50 set's folds
    else:
        with open(data / 'metadata.csv', newline='') as f:
            rows = [(r['file_name'], r['label'], int(r['fold']))
                    for r in csv.DictReader(f)]
    assert len(rows) == 30 and {f for *_, f in rows} == {1, 2, 3, 4, 5}
    ref = as_esc50(data, rows, tmp_path / 'reference')
    ours, log = train(data, tmp_path / 'ckpt')
    theirs, _ = train(ref, tmp_path / 'ckpt_ref')
    assert [r['epoch'] for r in ours] == [1, 2]
    for a, b in zip(ours, theirs):
        assert a['dev_acc'] == b['dev_acc'], (ours, theirs)
        assert a['dev_loss'] == pytest.approx(b['dev_loss'], abs=1e-5)
        assert a['train_loss'] == pytest.approx(b['train_loss'], abs=1e-5)
    # 4 training folds x 2 clips of each class
    assert '[data] train clips per class: high_beeps 8, low_hum 8, ' \
        'white_noise 8' in log


def test_manifest_forms(tmp_path):
    """``labels`` split on ';', TSV, the manifest file as data_dir, an
    absolute path inside its folder; several labels make it multi-label."""
    for i in range(5):
        for name in ('a', 'b'):
            (tmp_path / 'clips').mkdir(exist_ok=True)
            (tmp_path / 'clips' / f'{name}{i}.wav').write_bytes(b'')
    lines = ['path\tlabels'] + [f'clips/a{i}.wav\tdog' for i in range(5)]
    lines += [f'{tmp_path}/clips/b{i}.wav\tdog; rain' for i in range(4)]
    lines += ['./clips/b4.wav\train']
    (tmp_path / 'list.tsv').write_text('\n'.join(lines) + '\n')
    cfg = load_config(None, {'data_dir': str(tmp_path / 'list.tsv'),
                             'checkpoint_dir': str(tmp_path / 'ckpt')})
    with contextlib.redirect_stdout(io.StringIO()):
        table = load_table(cfg.data, cfg.train)
    assert table.label_list == ['dog', 'rain']
    assert table.multi_label
    assert table.paths[5] == tmp_path / 'clips' / 'b0.wav'
    assert table.targets == [[0]] * 5 + [[0, 1]] * 4 + [[1]]
    assert table.folds_file == tmp_path / 'list.folds.csv'
    assert table.folds_file.is_file()


# -------------------------------------------------------------------- folds

def test_assigned_folds_hold_each_class_share(tmp_path):
    sizes = {'a': 7, 'b': 12, 'c': 5, 'd': 23, 'e': 9}  # 56 clips
    targets = [[c] for c, n in enumerate(sizes.values()) for _ in range(n)]
    folds = np.array(assign_folds(targets, 5, seed=0))
    assert set(folds) == {1, 2, 3, 4, 5}
    for c, n in enumerate(sizes.values()):
        in_class = folds[[t == [c] for t in targets]]
        for f in range(1, 6):
            # a class of n clips: n / 5 per fold, to within one clip
            assert abs((in_class == f).sum() - n / 5) < 1, (c, f)
    sizes_per_fold = np.bincount(folds)[1:]
    assert sizes_per_fold.max() - sizes_per_fold.min() <= 1  # 56 = 12+11*4
    assert sizes_per_fold.sum() == 56
    assert assign_folds(targets, 5, 0) == folds.tolist()  # seeded
    assert assign_folds(targets, 5, 1) != folds.tolist()


def _folder(root, sizes):
    for name, n in sizes.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            (root / name / f'{i}.wav').write_bytes(b'')
    return root


def test_folds_file_is_reused_and_a_change_is_refused(tmp_path):
    data = _folder(tmp_path / 'data', {'cat': 6, 'dog': 5})
    cfg = load_config(None, {'data_dir': str(data),
                             'checkpoint_dir': str(tmp_path / 'ckpt')})
    with contextlib.redirect_stdout(io.StringIO()) as out:
        first = load_table(cfg.data, cfg.train)
    folds_file = data / '.folds.csv'
    assert first.folds_file == folds_file
    assert f'assigned 5 stratified folds (seed 0) to 11 clips: ' \
        f'{folds_file}' in out.getvalue()
    # the file is read back, not re-assigned: an edit in it is honoured
    with open(folds_file) as f:
        given = {r['path']: int(r['fold']) for r in csv.DictReader(f)}
    given['cat/0.wav'] = given['cat/0.wav'] % 5 + 1
    write_folds(data, [(p, None, f) for p, f in given.items()])
    again = load_table(cfg.data, cfg.train)
    assert dict(zip([p.relative_to(data).as_posix() for p in again.paths],
                    again.folds)) == given
    (data / 'dog' / 'new.wav').write_bytes(b'')
    with pytest.raises(DatasetError) as e:
        load_table(cfg.data, cfg.train)
    msg = str(e.value)
    assert msg == (f'the data set changed since the folds in {folds_file} '
                   f'were assigned (1 file(s) added, e.g. dog/new.wav): '
                   f'delete {folds_file} to assign folds again, or set '
                   f'folds_file to another path to keep it')
    (data / 'dog' / 'new.wav').unlink()
    (data / 'cat' / '3.wav').unlink()
    with pytest.raises(DatasetError, match=r'1 file\(s\) removed, e.g. '
                       r'cat/3.wav\): delete'):
        load_table(cfg.data, cfg.train)


def test_two_manifests_in_one_folder_keep_their_own_folds(tmp_path):
    data = make_synthetic(tmp_path / 'data', layout='folder', **TINY)
    rows = folder_rows(data)
    first, second = data / 'metadata.csv', data / 'others.csv'
    first.write_text('path,label\n' + ''.join(
        f'{p},{label}\n' for p, label, _ in rows))
    second.write_text('path,label\n' + ''.join(  # other files, no owl
        f'{p},{label}\n' for p, label, _ in rows[::2]))
    ckpt = tmp_path / 'ckpt'
    records, log = train(first, ckpt / 'a', epochs=1)
    assert f'{data / "metadata.folds.csv"} (delete it' in log
    folds_a = (data / 'metadata.folds.csv').read_text()
    records, log = train(second, ckpt / 'b', epochs=1)
    assert f'{data / "others.folds.csv"} (delete it' in log
    assert len((data / 'others.folds.csv').read_text().splitlines()) == 16
    records, log = train(first, ckpt / 'c', epochs=1)  # read back, unchanged
    assert 'assigned' not in log and len(records) == 1
    assert (data / 'metadata.folds.csv').read_text() == folds_a
    assert not (data / '.folds.csv').exists()
    # the .folds.csv both once shared is still read for the manifest it fits
    (data / 'metadata.folds.csv').rename(data / '.folds.csv')
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert table_of(first, ckpt).folds_file == \
            data / '.folds.csv'
        assert table_of(second, ckpt).folds_file == \
            data / 'others.folds.csv'
    assert out.getvalue() == ''
    # a change names the file and the key that moves it
    (data / 'others.folds.csv').write_text('path,fold\n')
    with pytest.raises(DatasetError, match=r'delete .*others\.folds\.csv to '
                       r'assign folds again, or set folds_file to another '
                       r'path to keep it'):
        table_of(second, ckpt)


def test_read_only_data_keeps_folds_beside_the_checkpoints(tmp_path,
                                                          monkeypatch):
    data = _folder(tmp_path / 'data', {'cat': 5, 'dog': 5})
    write = atomic.write_text

    def read_only(path, text):
        if Path(path).parent == data:
            raise PermissionError(13, 'Permission denied', str(path))
        return write(path, text)
    monkeypatch.setattr(atomic, 'write_text', read_only)
    cfg = load_config(None, {'data_dir': str(data),
                             'checkpoint_dir': str(tmp_path / 'ckpt')})
    with contextlib.redirect_stdout(io.StringIO()):
        table = load_table(cfg.data, cfg.train)
    assert table.folds_file == tmp_path / 'ckpt' / 'folds.csv'
    assert not (data / '.folds.csv').exists()
    # found there again
    assert load_table(cfg.data, cfg.train).folds == table.folds


def test_folder_listing_names_what_it_leaves_out(tmp_path, capsys):
    data = _folder(tmp_path / 'data', {'cat': 5, 'dog': 5})
    (data / 'cat' / '.DS_Store').write_bytes(b'')
    (data / 'cat' / '._0.wav').write_bytes(b'')  # macOS resource fork
    for name in ('notes.txt', 'a.txt', 'b.mid', 'c.mat'):
        (data / 'cat' / name).write_text('x')
    (data / 'dog' / '.git').mkdir()
    (data / 'dog' / '.git' / 'x.wav').write_bytes(b'')
    (data / 'dog' / 'deep' / 'er').mkdir(parents=True)
    (data / 'dog' / 'deep' / 'er' / 'n.FLAC').write_bytes(b'')
    (data / 'README.md').write_text('x')
    cfg = load_config(None, {'data_dir': str(data), 'num_folds': 2,
                             'checkpoint_dir': str(tmp_path / 'ckpt')})
    table = load_table(cfg.data, cfg.train)
    rel = [p.relative_to(data).as_posix() for p in table.paths]
    assert rel == [f'cat/{i}.wav' for i in range(5)] + [
        'dog/0.wav', 'dog/1.wav', 'dog/2.wav', 'dog/3.wav', 'dog/4.wav',
        'dog/deep/er/n.FLAC']
    warning = (
        f'[data] warning: {data}: left out 8 file(s) or folder(s): 1 outside '
        f'the class folders (README.md); 3 hidden (cat/.DS_Store, '
        f'cat/._0.wav, dog/.git/); 4 not audio (cat/a.txt, cat/b.mid, '
        f'cat/c.mat, ... 1 more)\n')
    out = capsys.readouterr()
    assert out.err == warning and 'left out' not in out.out
    # the folds file written beside the classes is not news
    load_table(cfg.data, cfg.train)
    assert capsys.readouterr().err == warning


def test_prediction_folder_scan_names_what_it_leaves_out(tmp_path, capsys):
    d = tmp_path / 'in'
    (d / 'sub' / '.cache').mkdir(parents=True)
    for name in ('b.wav', 'a.opus', 'sub/c.oga', 'sub/.cache/d.wav',
                 '._b.wav', 'notes.txt', 'sub/e.aif'):
        (d / name).write_bytes(b'')
    assert prediction.expand_inputs([d, d / 'notes.txt']) == [
        d / 'a.opus', d / 'b.wav', d / 'sub' / 'c.oga', d / 'sub' / 'e.aif',
        d / 'notes.txt']
    assert capsys.readouterr().err == (
        f'warning: {d}: left out 3 file(s) or folder(s): 2 hidden '
        f'(._b.wav, sub/.cache/); 1 not audio (notes.txt)\n')
    (d / 'only').mkdir()
    (d / 'only' / 'x.txt').write_text('x')
    with pytest.raises(UserError, match='directory holds no audio files'):
        prediction.expand_inputs([d / 'only'])
    assert '1 not audio (x.txt)' in capsys.readouterr().err


# ------------------------------------------------------- any format, length

def _sound(path, seconds, rate, channels=1, seed=0, **kw):
    rng = np.random.default_rng(seed)
    x = 0.3 * rng.standard_normal((int(seconds * rate), channels))
    sf.write(path, x if channels > 1 else x[:, 0], rate, **kw)


def test_clip_windows_and_their_average(tmp_path):
    feature = FeatureConfig()
    for name, secs in (('a', 2.5), ('b', 0.5)):
        _sound(tmp_path / f'{name}.wav', secs, 32000)
    ds = ClipDataset([(tmp_path / 'a.wav', 0), (tmp_path / 'b.wav', 1)],
                     ['x', 'y'], False, feature, NumpyLogMel(feature))
    # 1 s windows of the waveform, the last of each clip padded to 1 s
    # with silence, then log-mel: 1 + 32000 // 320 = 101 frames each
    win = ClipWindows(ds, Windowing(1.0), NumpyLogMel(feature))
    assert win.clip_of == [0, 0, 0, 1]
    assert win.weights == [32000, 32000, 16000, 16000]
    assert [win[i][0].shape for i in range(4)] == [(101, 64)] * 4
    a, _ = sf.read(tmp_path / 'a.wav', dtype='float32')
    by_hand = np.zeros(32000, np.float32)
    by_hand[:16000] = a[64000:]
    np.testing.assert_array_equal(win[2][0], NumpyLogMel(feature)(by_hand))
    # the same windows, scored as predict.py scores files
    seen = []
    list(predict_files([tmp_path / 'a.wav', tmp_path / 'b.wav'], feature,
                       lambda w: seen.extend(w) or np.ones((len(w), 2)),
                       Windowing(1.0), batch_size=3))
    for x, w in zip(win.items, seen):
        np.testing.assert_array_equal(x[0], NumpyLogMel(feature)(w))
    # window probabilities averaged, weighted by length, as logits
    logits = np.log(np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8],
                              [0.3, 0.7]]))
    pooled, targets = Task().pool_windows(logits, np.array([0, 0, 0, 1]),
                                          win.clip_of, win.weights)
    p0 = (2 * 0.9 + 2 * 0.5 + 1 * 0.2) / 5
    np.testing.assert_allclose(np.exp(pooled), [[p0, 1 - p0], [0.3, 0.7]],
                               rtol=1e-6)
    assert targets.tolist() == [0, 1]
    # random crops: the training length, drawn from (seed, epoch, clip)
    ds.set_crop(101, feature.floor_db, seed=0)
    a1, a2 = ds[(0, 1)][0], ds[(0, 2)][0]
    assert a1.shape == a2.shape == (101, 64)
    np.testing.assert_array_equal(ds[(0, 1)][0], a1)
    assert not np.array_equal(a1, a2)
    b = ds[(1, 1)][0]  # 51 frames padded with the log-mel floor
    np.testing.assert_array_equal(b[:51], ds[1][0])
    assert (b[51:] == feature.floor_db).all()


def test_mixed_formats_and_lengths_train(tmp_path, capsys):
    assert {'OPUS', 'VORBIS'} <= set(sf.available_subtypes('OGG'))
    data = tmp_path / 'mixed'
    forms = [('wav', 16000, 1, {}), ('flac', 44100, 2, {}),
             ('ogg', 22050, 1, {'format': 'OGG', 'subtype': 'VORBIS'}),
             ('mp3', 44100, 1, {'format': 'MP3',
                                'subtype': 'MPEG_LAYER_III'}),
             # Ogg's other names, and AIFF's short one
             ('opus', 48000, 2, {'format': 'OGG', 'subtype': 'OPUS'}),
             ('oga', 11025, 1, {'format': 'OGG', 'subtype': 'VORBIS'}),
             ('aif', 8000, 1, {'format': 'AIFF'})]
    written = []
    for c, label in enumerate(('hum', 'hiss', 'beep')):
        (data / label).mkdir(parents=True)
        for i in range(7):
            ext, rate, ch, kw = forms[(c + i) % 7]
            _sound(data / label / f'{i}.{ext}', 0.3 + 0.4 * i, rate, ch,
                   seed=10 * c + i, **kw)
            written.append(data / label / f'{i}.{ext}')
    # prediction's folder scan takes the same files, and says nothing
    assert sorted(prediction.expand_inputs([data])) == sorted(written)
    records, log = train(data, tmp_path / 'ckpt', epochs=1,
                         clip_seconds=1.0, balanced_sampling=True)
    assert len(records) == 1 and np.isfinite(records[0]['dev_loss'])
    assert 0.0 <= records[0]['dev_acc'] <= 1.0
    assert '[data] train clips per class: beep' in log
    table = table_of(data, tmp_path / 'ckpt')
    assert sorted(table.paths) == sorted(written)  # every format is audio
    err = capsys.readouterr().err
    assert 'left out' not in err and 'unreadable' not in err, err


# ------------------------------------------------------------------ balance

def test_balanced_sampling_draws_classes_equally(tmp_path):
    sizes = [3, 9, 31]  # 43 clips: 43 = 3 * 14 + 1 draws
    items = [(f'{c}_{i}.wav', c) for c, n in enumerate(sizes)
             for i in range(n)]
    ds = ClipDataset(items, ['a', 'b', 'c'], False, None)
    sampler = BalancedBatchSampler(ds, batch_size=8, seed=0)
    sampler.set_epoch(1)
    batches = list(sampler)
    drawn = [i for b in batches for i in b]
    assert len(batches) == len(sampler) == 6 and len(drawn) == 43
    per_class = np.bincount([items[i][1] for i in drawn])
    assert sorted(per_class.tolist()) == [14, 14, 15]
    # the 3 clips of class a are each drawn 4 or 5 times (14 = 3 * 4 + 2)
    a = np.bincount([i for i in drawn if i < 3])
    assert sorted(a.tolist()) == [4, 5, 5]
    # the order depends only on seed and epoch; resuming skips batches
    sampler.set_epoch(1)
    assert list(sampler) == batches
    sampler.set_epoch(1)
    sampler.skip = 2
    assert list(sampler) == batches[2:]
    sampler.set_epoch(2)
    assert list(sampler) != batches


# ----------------------------------------------------------------- bad data

@pytest.fixture
def bad(tmp_path):
    """A writer of small bad data sets; returns the data_dir."""
    def make(kind):
        root = tmp_path / kind
        if kind == 'empty_class':
            _folder(root, {'cat': 5, 'dog': 5})
            (root / 'owl').mkdir()
            (root / 'owl' / 'notes.txt').write_text('x')
            return root, root / 'owl', 'add clips'
        if kind == 'few_clips':
            _folder(root, {'cat': 5, 'dog': 3})
            return root, "'dog'", 'lower num_folds'
        _folder(root, {'cat': 5, 'dog': 5})
        meta = root / 'metadata.csv'
        rows = [f'{d}/{i}.wav,{d}' for d in ('cat', 'dog') for i in range(5)]
        header = 'file_name,label'
        if kind == 'duplicate':
            rows.append('cat/2.wav,cat')
            fix = 'remove the duplicate row'
        elif kind == 'outside':
            rows.append('../elsewhere.wav,cat')
            fix = 'relative to it'
        elif kind == 'columns':
            header = 'file,category'
            fix = 'needs a header with a path (or file_name)'
        meta.write_text('\n'.join([header] + rows) + '\n')
        return root, meta, fix
    return make


@pytest.mark.parametrize('kind', ['empty_class', 'few_clips', 'duplicate',
                                  'outside', 'columns'])
def test_bad_data_is_one_line_and_exit_2(kind, bad, tmp_path, capsys):
    root, name, fix = bad(kind)
    code, err = train_errors(capsys, data_dir=root,
                                    checkpoint_dir=tmp_path / 'ckpt')
    assert_one_line(code, err, name, fix)


def test_one_class_is_refused_naming_the_level_below(tmp_path, capsys):
    # data_dir one level too high: its one folder holds the class folders
    top = tmp_path / 'top'
    _folder(top / 'mysounds', {'cat': 5, 'dog': 5})
    code, err = train_errors(capsys, data_dir=top,
                             checkpoint_dir=tmp_path / 'ckpt')
    assert_one_line(code, err, f'data_dir {top} holds one class folder '
                    f"('mysounds')", f'set data_dir: {top / "mysounds"} (it '
                    f'holds a folder dataset)')
    assert not (top / '.folds.csv').exists()
    # ... or a manifest
    (top / 'mysounds' / 'metadata.csv').write_text(
        'path,label\n' + ''.join(f'{d}/{i}.wav,{d}\n' for d in ('cat', 'dog')
                                  for i in range(5)))
    code, err = train_errors(capsys, data_dir=top,
                             checkpoint_dir=tmp_path / 'ckpt')
    assert_one_line(code, err, f'set data_dir: {top / "mysounds"} (it '
                    f'holds a manifest dataset)')
    # one class folder of clips: nothing below to point at
    flat = _folder(tmp_path / 'flat', {'cat': 5})
    code, err = train_errors(capsys, data_dir=flat,
                             checkpoint_dir=tmp_path / 'ckpt')
    assert_one_line(code, err, f"data_dir {flat} holds one class folder "
                    f"('cat')", f'add a folder of clips for each other '
                    f'class beside {flat / "cat"}')
    # a manifest of one label
    manifest = flat / 'one.csv'
    manifest.write_text('path,label\n' + ''.join(
        f'cat/{i}.wav,cat\n' for i in range(5)))
    code, err = train_errors(capsys, data_dir=manifest,
                             checkpoint_dir=tmp_path / 'ckpt')
    assert_one_line(code, err, f"{manifest} names 1 class ('cat')",
                    'at least two')


def test_changed_data_set_is_one_line_and_exit_2(tmp_path, capsys):
    data = make_synthetic(tmp_path / 'data', layout='folder', **TINY)
    with contextlib.redirect_stdout(io.StringIO()):
        table_of(data, tmp_path / 'ckpt')
    shutil.copy(data / 'low_hum' / '1-1000-A-0.wav',
                data / 'low_hum' / 'extra.wav')
    code, err = train_errors(capsys, data_dir=data,
                                    checkpoint_dir=tmp_path / 'ckpt')
    assert_one_line(code, err, 'low_hum/extra.wav', '1 file(s) added',
                    f'delete {data / ".folds.csv"}')


def test_unreadable_clips_listed_or_skipped(tmp_path, capsys):
    data = make_synthetic(tmp_path / 'data', layout='folder', **TINY)
    (data / 'low_hum' / 'broken.wav').write_bytes(b'not audio at all')
    # bad samples deep in float files: the scan decodes them block by
    # block (70,000 frames: the NaN is in the second 65,536-frame block)
    for name, value in (('nan.wav', np.nan), ('fine.flac', None),
                        ('inf.wav', np.inf)):
        x = np.full(70000, 0.1, np.float32)
        if value is None:  # FLAC holds integers: always finite, kept
            sf.write(data / 'white_noise' / name, x, 16000)
            continue
        x[-1] = value
        sf.write(data / 'white_noise' / name, x, 16000, subtype='FLOAT')
    code, err = train_errors(capsys, data_dir=data,
                                    checkpoint_dir=tmp_path / 'ckpt')
    assert code == 2 and '3 unreadable audio file(s)' in err, err
    assert f'{data / "low_hum" / "broken.wav"}: cannot read audio' in err
    for name in ('nan.wav', 'inf.wav'):
        assert f'{data / "white_noise" / name}: contains NaN or infinite ' \
            f'samples' in err
    assert 'fine.flac' not in err
    assert '--skip_bad_files' in err
    with contextlib.redirect_stdout(io.StringIO()):
        trainer = Trainer(config(data, tmp_path / 'ckpt', epochs=1,
                                 skip_bad_files=True))
        assert trainer.fit() == 0
    names = {p.name for p, _ in trainer.train_set.items +
             trainer.dev_set.items}
    assert len(names) == 31 and 'fine.flac' in names
    assert not {'broken.wav', 'nan.wav', 'inf.wav'} & names
    assert 'skipping 3 unreadable audio file(s)' in capsys.readouterr().err


@pytest.mark.slow
def test_bad_data_through_the_train_script(bad, tmp_path):
    for kind in ('empty_class', 'outside'):
        root, name, fix = bad(kind)
        proc = run_script('train.py', '--data_dir', root, '--device', 'cpu',
                          '--checkpoint_dir', tmp_path / 'ckpt', check=False)
        assert_one_line(proc.returncode, proc.stderr, name, fix)


# ------------------------------------------------------ stages and labels

def test_stage_0_and_locate_on_my_sounds(tmp_path):
    data, ckpt = tmp_path / 'my_sounds', tmp_path / 'ckpt'
    stage_0 = subprocess.run(
        [sys.executable, str(ROOT / 'local' / 'prepare_data.py'), '--config',
         str(ROOT / 'conf' / 'my_sounds.yaml'), '--data_dir', str(data)],
        capture_output=True, text=True, env=script_env())
    out = stage_0.stdout
    assert stage_0.returncode == 0, out + stage_0.stderr
    # conf/my_sounds.yaml: 6 classes x 8 clips x 5 folds
    assert f'dataset ready: {data} (240 clips, 6 classes, 5 folds, folds ' \
        f'from {data / ".folds.csv"})' in out
    # the later stages find the dev clips through the folds file
    conf = conf_with('my_sounds.yaml', data_dir=str(data),
                     checkpoint_dir=str(ckpt))
    (tmp_path / 'my.yaml').write_text(yaml.safe_dump(conf))
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'local' / 'locate.py'), '--config',
         str(tmp_path / 'my.yaml'), 'dev_clips', '--limit', '100'],
        capture_output=True, text=True, env=script_env())
    assert proc.returncode == 0, proc.stderr
    with open(data / '.folds.csv') as f:
        fold1 = {str(data / r['path']) for r in csv.DictReader(f)
                 if r['fold'] == '1'}
    # a fifth of each class's 40 clips: 8 x 6
    assert len(fold1) == 48 and set(proc.stdout.split('\n')[:-1]) == fold1


UNICODE = ('Türklingel', 'door knock', '狗 bark')


@pytest.mark.slow
def test_label_names_as_written_through_predict_export_deploy(tmp_path):
    data = make_synthetic(tmp_path / 'data', layout='folder', **TINY)
    for old, new in zip(('high_beeps', 'low_hum', 'white_noise'), UNICODE):
        (data / old).rename(data / new)
    ckpt = tmp_path / 'ckpt'
    train(data, ckpt, epochs=1)
    clip = next((data / UNICODE[2]).iterdir())
    proc = run_script('predict.py', '--checkpoint',
                      ckpt / 'best' / 'model.pdparams', '--wav', clip,
                      '--top_k', 3, '--device', 'cpu')
    printed = [line.rsplit(': ', 1)[0] for line in
               proc.stdout.splitlines()[1:]]
    assert sorted(printed) == sorted(UNICODE), proc.stdout
    run_script('export_model.py', '--checkpoint',
               ckpt / 'best' / 'model.pdparams', '--output_dir',
               tmp_path / 'export')
    proc = run_script('deploy/predict.py', '--model_dir', tmp_path / 'export',
                      '--wav', clip, '--top_k', 3, '--device', 'cpu')
    deployed = [line.rsplit(': ', 1)[0] for line in
                proc.stdout.splitlines()[1:]]
    assert sorted(deployed) == sorted(UNICODE), proc.stdout
