"""keep_checkpoint_max: only the last K epoch_N/ stay, deleted oldest first
and crash-safely; best/ and avg_N/ stay, and --resume still works."""
import json
from pathlib import Path

import pytest

from tests.conftest import run_script, train_args
from paddlespeech.cls import checkpoint


def fake_run(root, epochs):
    """``epoch_N/`` with model and optimizer files, plus best/ and avg_2/
    (pruning looks only at the file names)."""
    for epoch in epochs:
        d = root / f'epoch_{epoch}'
        d.mkdir(parents=True)
        (d / 'model.pdparams').write_bytes(b'model')
        (d / 'model.pdopt').write_bytes(b'optimizer')
    for name in ('best', 'avg_2'):
        (root / name).mkdir()
        (root / name / 'model.pdparams').write_bytes(b'model')


def names(root):
    return sorted(p.name for p in Path(root).iterdir())


def test_prune_keeps_the_last_k_best_and_average(tmp_path):
    fake_run(tmp_path, [2, 4, 6, 8, 10, 12])  # numeric, not string, order
    deleted = checkpoint.prune_checkpoints(tmp_path, 2,
                                           current=tmp_path / 'epoch_12')
    assert [p.name for p in deleted] == ['epoch_2', 'epoch_4', 'epoch_6',
                                         'epoch_8']
    assert names(tmp_path) == ['avg_2', 'best', 'epoch_10', 'epoch_12']
    assert checkpoint.resume_point(tmp_path) == tmp_path / 'epoch_12'
    assert checkpoint.prune_checkpoints(tmp_path, 0) == []  # 0: keep all
    assert checkpoint.prune_checkpoints(tmp_path, 5) == []
    assert names(tmp_path) == ['avg_2', 'best', 'epoch_10', 'epoch_12']
    with pytest.raises(checkpoint.CheckpointError, match='got -1'):
        checkpoint.prune_checkpoints(tmp_path, -1)


def test_prune_never_deletes_the_checkpoint_just_written(tmp_path):
    """A fresh run (no --resume) beside an older, longer one writes epoch_1
    while epoch_5 exists: the new checkpoint stays."""
    fake_run(tmp_path, [1, 4, 5])
    checkpoint.prune_checkpoints(tmp_path, 1, current=tmp_path / 'epoch_1')
    assert [p.name for p in checkpoint.epoch_checkpoints(tmp_path)] == [
        'epoch_1', 'epoch_5']


def test_crash_while_pruning_leaves_only_complete_checkpoints(
        tmp_path, monkeypatch):
    fake_run(tmp_path, [1, 2, 3, 4])

    def killed_midway(path, *args, **kwargs):
        (Path(path) / 'model.pdopt').unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.shutil, 'rmtree', killed_midway)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.prune_checkpoints(tmp_path, 2)
    monkeypatch.undo()
    # the half-deleted epoch_1 is out of sight; what is visible is whole
    assert [p.name for p in checkpoint.epoch_checkpoints(tmp_path)] == [
        'epoch_2', 'epoch_3', 'epoch_4']
    assert all((d / 'model.pdopt').is_file()
               for d in checkpoint.epoch_checkpoints(tmp_path))
    assert checkpoint.resume_point(tmp_path) == tmp_path / 'epoch_4'
    checkpoint.prune_checkpoints(tmp_path, 2)  # the next save cleans up
    assert names(tmp_path) == ['avg_2', 'best', 'epoch_3', 'epoch_4']


@pytest.mark.slow
def test_training_keeps_the_last_k_and_resumes(tiny_dataset, tmp_path):
    """keep 1 is raised to average_last 2; resuming after pruning continues
    from the newest checkpoint and prunes again."""
    ckpt_dir = tmp_path / 'ckpt'
    args = train_args(tiny_dataset, ckpt_dir, '--save_freq', 1,
                      '--lr_schedule', 'constant', '--keep_checkpoint_max', 1,
                      '--average_last', 2)
    out = run_script('train.py', *args, '--epochs', 3).stdout
    assert ('keeping the last 2 epoch checkpoints, not 1: average_last 2 '
            'needs them') in out
    assert names(ckpt_dir) == ['avg_2', 'best', 'curves.png', 'epoch_2',
                               'epoch_3', 'metrics.jsonl']

    again = run_script('train.py', *args, '--epochs', 4, '--resume').stdout
    assert f'[resume] continuing after epoch 3 from {ckpt_dir / "epoch_3"}' \
        in again
    assert names(ckpt_dir) == ['avg_2', 'best', 'curves.png', 'epoch_3',
                               'epoch_4', 'metrics.jsonl']
    history = [json.loads(line) for line in
               (ckpt_dir / 'metrics.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in history] == [1, 2, 3, 4]
    assert json.loads((ckpt_dir / 'avg_2' / 'metrics.json').read_text()) == {
        'averaged': ['epoch_3', 'epoch_4']}
    best = json.loads((ckpt_dir / 'best' / 'metrics.json').read_text())
    assert best['dev_acc'] == max(r['dev_acc'] for r in history)


def test_negative_keep_is_refused(tiny_dataset, tmp_path):
    proc = run_script('train.py', *train_args(
        tiny_dataset, tmp_path / 'c', '--keep_checkpoint_max', -1),
        check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ('error: --keep_checkpoint_max must be 0 '
                                   '(keep all) or positive, got -1')
