"""Data-parallel training with paddle.distributed.launch on 2 CPU processes."""
import subprocess
import sys

import numpy as np
import paddle
import yaml

from conftest import ROOT, script_env


def test_two_cpu_processes_stay_in_sync(tiny_dataset, tmp_path):
    env = script_env()
    env['DDP_OUT'] = str(tmp_path)
    ckpt_dir = tmp_path / 'ckpt'
    proc = subprocess.run(
        [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node',
         '2', '--log_dir', str(tmp_path / 'log'),
         str(ROOT / 'tests' / 'ddp_worker.py'),
         str(ROOT / 'conf' / 'demo.yaml'),
         'data_dir', str(tiny_dataset), 'checkpoint_dir', str(ckpt_dir),
         'epochs', '2', 'save_freq', '2', 'batch_size', '4',
         'device', 'cpu'],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    logs = '\n'.join(p.read_text() for p in (tmp_path / 'log').glob('work*'))
    assert proc.returncode == 0, proc.stdout[-2000:] + logs[-3000:]

    rank0 = paddle.load(str(tmp_path / 'rank0.pdparams'))
    rank1 = paddle.load(str(tmp_path / 'rank1.pdparams'))
    saved = paddle.load(str(ckpt_dir / 'epoch_2' / 'model.pdparams'))
    assert rank0.keys() == rank1.keys()
    stats_differ = False
    for name in rank0:
        a, b = rank0[name].numpy(), rank1[name].numpy()
        if name.endswith(('_mean', '_variance')):
            # BatchNorm statistics stay per process (as in PyTorch DDP); that
            # they differ shows the two ranks trained on different clips.
            stats_differ |= not np.array_equal(a, b)
            continue
        np.testing.assert_array_equal(a, b, err_msg=name)
        np.testing.assert_array_equal(a, saved[name].numpy(), err_msg=name)
    assert stats_differ

    # exactly one checkpoint (and best/, curves) and one metrics line,
    # written by rank 0 only
    assert sorted(p.name for p in ckpt_dir.iterdir()) == [
        'best', 'curves.png', 'epoch_2', 'metrics.jsonl']
    assert len((ckpt_dir / 'metrics.jsonl').read_text().splitlines()) == 1


def test_stage_1_with_nproc_2(tiny_dataset, tmp_path):
    """``./run.sh --stage 1 --stop_stage 1 --nproc 2`` trains with two CPU
    processes through local/train.sh and rank 0 alone writes."""
    conf = yaml.safe_load((ROOT / 'conf' / 'demo.yaml').read_text())
    conf.update(data_dir=str(tiny_dataset), epochs=1, save_freq=1,
                batch_size=4, checkpoint_dir=str(tmp_path / 'ckpt'))
    conf_path = tmp_path / 'tiny.yaml'
    conf_path.write_text(yaml.safe_dump(conf))
    env = script_env()
    env['VENV'] = sys.prefix
    proc = subprocess.run(
        [str(ROOT / 'run.sh'), '--conf', str(conf_path), '--stage', '1',
         '--stop_stage', '1', '--nproc', '2'],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    logs = sorted(p.name for p in (tmp_path / 'ckpt' / 'log').glob('workerlog.*'))
    assert logs == ['workerlog.0', 'workerlog.1']
    assert (tmp_path / 'ckpt' / 'epoch_1' / 'model.pdparams').is_file()
    assert len((tmp_path / 'ckpt' / 'metrics.jsonl').read_text()
               .splitlines()) == 1
