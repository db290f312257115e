"""The recipe end to end on generated data: train -> predict -> export ->
deploy, each script through its command line, and run.sh chaining stages."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import (ROOT, conf_with, run_script, script_env,
                            train_args)
from paddlespeech.cls.config import load_config
from paddlespeech.cls.datasets.esc50 import read_meta
from paddlespeech.cls.datasets.synthetic import long_recording


def parse_blocks(text):
    """``{path: {label: prob}}`` from the seed's output format."""
    blocks, current = {}, None
    for line in text.splitlines():
        if line.startswith('[') and line.endswith(']'):
            current = blocks.setdefault(line[1:-1], {})
        elif current is not None and ': ' in line:
            label, prob = line.rsplit(': ', 1)
            try:
                current[label] = float(prob)
            except ValueError:  # other output: the block has ended
                current = None
        else:
            current = None
    return blocks


def dev_clips(dataset, n):
    return sorted((dataset / 'audio').glob('1-*.wav'))[:n]


def test_training_writes_checkpoints_and_metrics(trained_checkpoint):
    ckpt_dir = trained_checkpoint.parents[1]
    assert (ckpt_dir / 'epoch_1' / 'model.pdparams').is_file()
    assert (ckpt_dir / 'epoch_2' / 'model.pdopt').is_file()
    records = [json.loads(line) for line in
               (ckpt_dir / 'metrics.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in records] == [1, 2]
    for r in records:
        assert set(r) == {'epoch', 'dev_acc', 'dev_loss', 'train_loss',
                          'train_acc', 'dev_top5', 'dev_macro_f1'}
        assert 0 <= r['dev_acc'] <= 1 and r['dev_loss'] > 0


def test_training_ends_with_its_best_epoch(trained_checkpoint):
    ckpt_dir = trained_checkpoint.parents[1]
    last = (ckpt_dir.parent / 'train.log').read_text().splitlines()[-1]
    m = re.fullmatch(r'best dev_acc (\d\.\d{4}) at epoch (\d+) '
                     r'\(checkpoint (.+)\)', last)
    assert m, last
    records = [json.loads(line) for line in
               (ckpt_dir / 'metrics.jsonl').read_text().splitlines()]
    top = max(r['dev_acc'] for r in records)
    first = next(r for r in records if r['dev_acc'] == top)
    assert float(m[1]) == round(top, 4) and int(m[2]) == first['epoch']
    assert m[3] == str(ckpt_dir / 'best' / 'model.pdparams')
    assert json.loads((ckpt_dir / 'best' / 'metrics.json').read_text())[
        'epoch'] == first['epoch']


def test_training_summary_of_multi_label_run_without_best(tmp_path, capsys):
    """The task's score key (dev_mAP), the earliest of tied epochs, and the
    latest epoch checkpoint when there is no best/."""
    from paddlespeech.cls.task import Task
    from paddlespeech.cls.checkpoint import write_metrics
    from paddlespeech.cls.trainer import Trainer
    write_metrics(tmp_path / 'metrics.jsonl', [
        {'epoch': e, 'dev_map': m, 'dev_loss': 1.0, 'train_loss': 1.0}
        for e, m in ((1, 0.5), (2, 0.8125), (3, 0.8125), (4, 0.7))])
    for e in (2, 4):
        (tmp_path / f'epoch_{e}').mkdir()
        (tmp_path / f'epoch_{e}' / 'model.pdparams').write_bytes(b'')
    trainer = Trainer.__new__(Trainer)
    trainer.cfg = load_config(overrides={'average_last': 0})
    trainer.ckpt_dir, trainer.task = tmp_path, Task(multi_label=True)
    trainer.finish()
    assert capsys.readouterr().out.splitlines()[-1] == (
        f'best dev_map 0.8125 at epoch 2 (checkpoint '
        f'{tmp_path / "epoch_4" / "model.pdparams"})')


def test_library_messages_go_through_logging(monkeypatch, capsys):
    """Bare lines, INFO on stdout and warnings on stderr; on a rank other
    than 0 of a data-parallel run only errors; --log_level raises the
    bar."""
    from paddlespeech.cls import logs
    log = logs.get_logger('paddlespeech.cls.some_module')
    log.info('[train] a line')
    log.warning('[data] warning: a warning')
    assert capsys.readouterr() == ('[train] a line\n',
                                   '[data] warning: a warning\n')
    monkeypatch.setenv('PADDLE_TRAINER_ID', '1')
    log.info('[train] rank 1')
    log.warning('rank 1 warns')
    log.error('rank 1 fails')
    assert capsys.readouterr() == ('', 'rank 1 fails\n')
    monkeypatch.delenv('PADDLE_TRAINER_ID')
    try:
        logs.set_level('WARNING')
        log.info('hidden')
        log.warning('shown')
        assert capsys.readouterr() == ('', 'shown\n')
    finally:
        logs.set_level('info')
    assert logs.pop_level(['--epochs', '2', '--log_level', 'debug']) == (
        ['--epochs', '2'], 'debug')
    assert logs.pop_level(['--log_level=error']) == ([], 'error')


def test_log_level_flag_of_train_py(tiny_dataset, tmp_path):
    """--log_level warning: training prints none of its progress lines and
    still trains; an unknown level is one error line."""
    ckpt_dir = tmp_path / 'ckpt'
    proc = run_script('train.py', *train_args(
        tiny_dataset, ckpt_dir, '--epochs', 1, '--log_freq', 1,
        '--log_level', 'warning'))
    assert proc.stdout == '', proc.stdout
    assert (ckpt_dir / 'epoch_1' / 'model.pdparams').is_file()
    proc = run_script('train.py', *train_args(
        tiny_dataset, ckpt_dir, '--log_level', 'loud'), check=False)
    assert proc.returncode == 2 and proc.stderr == (
        'error: --log_level loud: use one of debug, info, warning, error\n')


def test_predict_prints_seed_block(trained_checkpoint, tiny_dataset):
    clip = dev_clips(tiny_dataset, 1)[0]
    out = run_script('predict.py', '--checkpoint', trained_checkpoint,
                     '--wav', clip, '--top_k', 3, '--device', 'cpu').stdout
    lines = out.strip().splitlines()
    assert lines[0] == f'[{clip}]' and len(lines) == 4
    _, labels = read_meta(tiny_dataset)
    probs = [float(line.rsplit(': ', 1)[1]) for line in lines[1:]]
    assert {line.rsplit(': ', 1)[0] for line in lines[1:]} == set(labels)
    assert probs == sorted(probs, reverse=True)
    assert sum(probs) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize('mkldnn', ['true', 'false'])
def test_deployed_model_equals_dynamic_model(trained_checkpoint, tiny_dataset,
                                             tmp_path, mkldnn):
    export_dir = tmp_path / 'export'
    run_script('export_model.py', '--checkpoint', trained_checkpoint,
               '--output_dir', export_dir)
    assert {p.name for p in export_dir.iterdir()} >= {
        'inference.json', 'inference.pdiparams', 'model.json'}
    clips = dev_clips(tiny_dataset, 3)
    dynamic = parse_blocks(run_script(
        'predict.py', '--checkpoint', trained_checkpoint, '--wav', *clips,
        '--top_k', 3).stdout)
    deployed = parse_blocks(run_script(
        'deploy/predict.py', '--model_dir', export_dir, '--wav',
        tiny_dataset / 'audio', '--batch_size', 4, '--top_k', 3,
        '--enable_mkldnn', mkldnn, '--cpu_threads', 2).stdout)
    assert len(deployed) == len(list((tiny_dataset / 'audio').iterdir()))
    for clip in clips:
        d, s = dynamic[str(clip)], deployed[str(clip)]
        assert list(d) == list(s)  # same labels, same order
        assert np.abs(np.array(list(d.values())) -
                      np.array(list(s.values()))).max() <= 1e-5


@pytest.mark.slow
def test_run_sh_chains_all_stages(tmp_path):
    """``./run.sh --conf X`` generates data, trains, predicts, exports and
    deploys with no paths passed between the stages."""
    conf = conf_with('demo.yaml', data_dir=str(tmp_path / 'data'),
                     epochs=1, save_freq=1,
                     checkpoint_dir=str(tmp_path / 'ckpt'),
                     export_dir=str(tmp_path / 'export'))
    conf['data']['synthetic'].update(clips_per_fold=1, seconds=0.5)
    conf_path = tmp_path / 'tiny.yaml'
    conf_path.write_text(yaml.safe_dump(conf))
    env = script_env()
    env['VENV'] = sys.prefix
    proc = subprocess.run([str(ROOT / 'run.sh'), '--conf', str(conf_path)],
                          capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert 'dataset ready' in proc.stdout
    assert '[eval] epoch 1: dev_acc' in proc.stdout
    assert 'exported' in proc.stdout
    blocks = parse_blocks(proc.stdout)
    # stage 2: a dev clip of each of 3 classes; stage 4: of 4, each truth
    assert len(blocks) == 4 and proc.stdout.count('\ntruth: ') == 7
    assert (tmp_path / 'export' / 'model.json').is_file()

    # A single stage on its own picks up the previous stages' results.
    only4 = subprocess.run([str(ROOT / 'run.sh'), '--conf', str(conf_path),
                            '4'], capture_output=True, text=True, env=env,
                           timeout=600)
    assert only4.returncode == 0, only4.stderr[-2000:]
    assert len(parse_blocks(only4.stdout)) == 4


def test_stage_0_offline_says_where_to_put_the_archive(tmp_path):
    env = script_env()
    env['http_proxy'] = env['https_proxy'] = 'http://127.0.0.1:9'
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'local' / 'prepare_data.py'), '--config',
         str(ROOT / 'conf' / 'panns.yaml'), '--data_home', str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert 'Traceback' not in proc.stderr
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1
    assert 'ESC-50-master.zip' in message and str(tmp_path) in message
    assert 'https://' in message
    assert not list(tmp_path.iterdir())  # nothing half-downloaded left


@pytest.mark.parametrize('what', ['checkpoint', 'dev_clips'])
def test_locate_imports_no_paddle(what, tiny_dataset, tmp_path):
    """The stage scripts call local/locate.py several times per stage; it
    reads the config, the checkpoint layout and the dataset's csv only."""
    conf = tmp_path / 'c.yaml'
    conf.write_text(f'data_dir: {tiny_dataset}\ncheckpoint_dir: {tmp_path}\n')
    proc = subprocess.run(
        [sys.executable, '-X', 'importtime', str(ROOT / 'local' / 'locate.py'),
         '--config', str(conf), what], capture_output=True, text=True,
        env=script_env(), check=True)
    expected = {'checkpoint': '',
                'dev_clips': str(sorted((tiny_dataset / 'audio').glob(
                    '1-*.wav'))[0])}[what]
    assert proc.stdout.strip() == expected
    imported = {line.rsplit('|', 1)[-1].strip()
                for line in proc.stderr.splitlines()
                if line.startswith('import time:')}
    assert 'paddlespeech.cls.checkpoint' in imported  # the log is complete
    assert not {m for m in imported if m.split('.')[0] == 'paddle'}


def test_detect_dir_defaults_beside_the_export(tmp_path):
    # .ci/run reads exp/demo/detect after ./run.sh --conf conf/demo.yaml 7
    assert load_config(ROOT / 'conf' / 'demo.yaml').detect_dir == \
        'exp/demo/detect'
    assert load_config(ROOT / 'conf' / 'my_sounds.yaml').detect_dir == \
        'exp/my_sounds/detect'
    conf = tmp_path / 'c.yaml'
    conf.write_text('export_dir: a/export\ndetect_dir: b\n')
    assert load_config(conf).detect_dir == 'b'
    assert load_config(conf, {'detect_dir': 'c'}).detect_dir == 'c'


def locate(conf, *args):
    return subprocess.run(
        [sys.executable, str(ROOT / 'local' / 'locate.py'), '--config',
         str(conf), *map(str, args)], capture_output=True, text=True,
        env=script_env(), check=True).stdout


def test_dev_picks_are_of_different_classes(tiny_dataset, tmp_path):
    conf = tmp_path / 'c.yaml'
    conf.write_text(f'data_dir: {tiny_dataset}\n')
    _, labels = read_meta(tiny_dataset)
    # the first dev clips are two of class 0 ...
    first = [Path(p) for p in locate(conf, 'dev_clips', '--limit', 2).split()]
    assert [p.stem[-1] for p in first] == ['0', '0']
    # ... the picks one of each class, in class order, with its label
    for limit, n in ((2, 2), (5, 3)):
        rows = [line.split('\t') for line in
                locate(conf, 'dev_picks', '--limit', limit).splitlines()]
        assert [int(Path(p).stem[-1]) for p, _ in rows] == list(range(n))
        assert all(Path(p).name.startswith('1-') for p, _ in rows)  # fold 1
        assert [label for _, label in rows] == labels[:n]


@pytest.fixture(scope='module')
def recipe_conf(tiny_dataset, trained_checkpoint, tmp_path_factory):
    """A config of the tiny dataset and trained checkpoint, exported into
    ``<root>/exp/tiny/export`` as stage 3 does; detect_dir not set."""
    root = tmp_path_factory.mktemp('recipe')
    conf = conf_with('demo.yaml', data_dir=str(tiny_dataset),
                     checkpoint_dir=str(trained_checkpoint.parents[1]),
                     export_dir=str(root / 'exp' / 'tiny' / 'export'))
    assert 'output_dir' not in conf['detect']
    path = root / 'tiny.yaml'
    path.write_text(yaml.safe_dump(conf))
    run_script('export_model.py', '--config', path, '--checkpoint',
               trained_checkpoint, '--output_dir',
               conf['export']['export_dir'])
    return path


def run_stage(*argv):
    env = script_env()
    env['VENV'] = sys.prefix
    proc = subprocess.run([str(a) for a in argv], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize('script', ['infer.sh', 'static_model_infer.sh'])
def test_stages_2_and_4_print_the_truth(recipe_conf, tiny_dataset, script):
    out = run_stage(ROOT / 'local' / script, recipe_conf)
    _, labels = read_meta(tiny_dataset)
    blocks = parse_blocks(out)
    lines = out.splitlines()
    # per clip: [path], top_k (3) "Label: score" lines, then its truth
    assert len(lines) == 5 * len(blocks) and len(blocks) == 3
    for k, path in enumerate(blocks):
        head, scores, truth = lines[5 * k], blocks[path], lines[5 * k + 4]
        assert head == f'[{path}]' and sorted(scores) == sorted(labels)
        assert truth == f'truth: {labels[int(Path(path).stem[-1])]}'
    assert {int(Path(p).stem[-1]) for p in blocks} == {0, 1, 2}


@pytest.mark.slow
def test_stage_7_takes_flags_after_double_dash(recipe_conf, tmp_path):
    """``./run.sh 7 -- --wav F``: detect.py on F (no synthetic recording),
    written beside the export, not into ./detect."""
    field = tmp_path / 'field.wav'
    long_recording(field, seconds=3)
    stray = ROOT / 'detect'
    existed = stray.exists()
    out = run_stage(ROOT / 'run.sh', '--conf', recipe_conf, '7', '--',
                    '--wav', field, '--plot', 'false')
    detect_dir = recipe_conf.parent / 'exp' / 'tiny' / 'detect'
    assert sorted(p.name for p in detect_dir.iterdir()) == [
        'field.events.csv', 'field.labels.txt', 'field.scores.npz']
    assert out.splitlines()[-1].startswith(f'{field}: ')
    assert stray.exists() == existed
