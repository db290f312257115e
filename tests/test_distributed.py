"""Data-parallel training with paddle.distributed.launch: two CPU processes
under one launcher, and two launchers ("nodes") on 127.0.0.1 with one
process each."""
import random
import socket
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml

from tests.conftest import ROOT, conf_with, script_env

pytestmark = pytest.mark.slow
WORKER = [str(ROOT / 'tests' / 'ddp_worker.py'), str(ROOT / 'conf' /
                                                     'demo.yaml')]


def free_port():
    """A free port outside the kernel's ephemeral range (where the launcher
    picks its workers' ports)."""
    while True:
        port = random.randint(20000, 29999)
        with socket.socket() as s:
            try:
                s.bind(('127.0.0.1', port))
                return port
            except OSError:
                continue


def node_env(rank, tmp_path):
    """Each launcher gets its own port range for its workers."""
    env = script_env()
    env['DDP_OUT'] = str(tmp_path)
    env['PORT_RANGE'] = f'{61000 + rank * 1500}:{62499 + rank * 1500}'
    for key in [k for k in env if k.startswith('PADDLE_')]:
        del env[key]
    return env


def run_nodes(commands, envs, cwd, timeout=300):
    """Start the launchers together; ``[(returncode, output)]``."""
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env,
                              cwd=cwd) for cmd, env in zip(commands, envs)]
    try:
        outs = [p.communicate(timeout=timeout)[0] for p in procs]
        return [(p.returncode, out) for p, out in zip(procs, outs)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_two_cpu_processes_stay_in_sync(tiny_dataset, tmp_path):
    env = script_env()
    env['DDP_OUT'] = str(tmp_path)
    ckpt_dir = tmp_path / 'ckpt'
    proc = subprocess.run(
        [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node',
         '2', '--log_dir', str(tmp_path / 'log'), *WORKER,
         'data_dir', str(tiny_dataset), 'checkpoint_dir', str(ckpt_dir),
         'epochs', '2', 'save_freq', '2', 'batch_size', '4',
         'device', 'cpu'],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    logs = '\n'.join(p.read_text() for p in (tmp_path / 'log').glob('work*'))
    assert proc.returncode == 0, proc.stdout[-2000:] + logs[-3000:]
    assert_ranks_in_sync(tmp_path, ckpt_dir)


def test_two_nodes_on_loopback_stay_in_sync(tiny_dataset, tmp_path):
    """Two launchers, ``--nnodes 2 --master 127.0.0.1:PORT``, one CPU process
    each: the parameters agree and rank 0 alone writes."""
    ckpt_dir, master = tmp_path / 'ckpt', f'127.0.0.1:{free_port()}'
    commands = [[sys.executable, '-m', 'paddle.distributed.launch',
                 '--master', master, '--nnodes', '2', '--rank', str(rank),
                 '--nproc_per_node', '1', '--log_dir',
                 str(tmp_path / f'log{rank}'), *WORKER,
                 'data_dir', str(tiny_dataset), 'checkpoint_dir',
                 str(ckpt_dir), 'epochs', '2', 'save_freq', '2',
                 'batch_size', '4', 'device', 'cpu'] for rank in (0, 1)]
    results = run_nodes(commands, [node_env(r, tmp_path) for r in (0, 1)],
                        tmp_path)
    logs = '\n'.join(p.read_text() for p in tmp_path.glob('log*/work*'))
    assert [code for code, _ in results] == [0, 0], logs[-3000:]
    assert_ranks_in_sync(tmp_path, ckpt_dir)


def assert_ranks_in_sync(tmp_path, ckpt_dir):
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


def tiny_conf(tiny_dataset, tmp_path):
    conf = conf_with('demo.yaml', data_dir=str(tiny_dataset), epochs=1,
                     save_freq=1, batch_size=4,
                     checkpoint_dir=str(tmp_path / 'ckpt'))
    conf_path = tmp_path / 'tiny.yaml'
    conf_path.write_text(yaml.safe_dump(conf))
    return conf_path


def test_stage_1_on_two_nodes(tiny_dataset, tmp_path):
    """``./run.sh 1 --nnodes 2 --master HOST:PORT --node_rank R`` on each of
    two "machines" (here both on 127.0.0.1): one checkpoint, a log per node."""
    conf_path, master = tiny_conf(tiny_dataset, tmp_path), \
        f'127.0.0.1:{free_port()}'
    commands = [[str(ROOT / 'run.sh'), '--conf', str(conf_path), '1',
                 '--nnodes', '2', '--master', master, '--node_rank', str(r)]
                for r in (0, 1)]
    envs = [node_env(r, tmp_path) for r in (0, 1)]
    for env in envs:
        env['VENV'] = sys.prefix
    results = run_nodes(commands, envs, tmp_path)
    ckpt = tmp_path / 'ckpt'
    logs = '\n'.join(p.read_text() for p in ckpt.glob('log/*/work*'))
    assert [code for code, _ in results] == [0, 0], \
        logs[-3000:] + results[0][1][-2000:]
    assert sorted(p.relative_to(ckpt / 'log').as_posix()
                  for p in ckpt.glob('log/*/workerlog.*')) == [
        'node0/workerlog.0', 'node1/workerlog.0']
    # 24 training clips in batches of 4, shared by 2 ranks: 3 steps each
    rank0_log = (ckpt / 'log' / 'node0' / 'workerlog.0').read_text()
    assert '[train] epoch 1/1 step 3/3 ' in rank0_log
    assert sorted(p.name for p in ckpt.iterdir()) == [
        'best', 'curves.png', 'epoch_1', 'log', 'metrics.jsonl']
    assert len((ckpt / 'metrics.jsonl').read_text().splitlines()) == 1


def test_stage_1_with_nproc_2(tiny_dataset, tmp_path):
    """``./run.sh --stage 1 --stop_stage 1 --nproc 2`` trains with two CPU
    processes through local/train.sh and rank 0 alone writes."""
    conf_path = tiny_conf(tiny_dataset, tmp_path)
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
