"""Head-only training (``head_only: true``): the head trained on cached
embeddings equals the head trained through the normal loop with the
backbone frozen; the cache is reused and follows changed files; the
checkpoint predicts and exports like any other."""
import json
import os

import numpy as np
import paddle
import pytest

from paddlespeech.cls import open_model
from paddlespeech.cls.checkpoint import read_state
from paddlespeech.cls.config import load_config
from paddlespeech.cls.export import export
from paddlespeech.cls.trainer import Trainer


def train(data, out, config=None, **overrides):
    """Trainer on ``data``: CNN6 from scratch, no augmentation or dropout,
    whole 0.5 s clips; returns the metrics records."""
    cfg = load_config(config, {
        'data_dir': str(data), 'checkpoint_dir': str(out), 'backbone':
        'cnn6', 'pretrained': False, 'dropout': 0.0, 'clip_seconds': 0.5,
        'epochs': 1, 'batch_size': 8, 'learning_rate': 1e-3,
        'device': 'cpu', 'cpu_threads': 1, 'save_freq': 1, 'seed': 3,
        **overrides})
    with paddle.utils.unique_name.guard():  # parameter names as a new run
        assert Trainer(cfg).fit() == 0
    return [json.loads(line) for line in
            (out / 'metrics.jsonl').read_text().splitlines()]


def head(ckpt):
    state, _ = read_state(ckpt / 'model.pdparams')
    return {k: np.asarray(v) for k, v in state.items()
            if k.startswith('fc.')}, state


def test_head_only_equals_the_frozen_loop(tiny_dataset, tmp_path, capsys):
    frozen = train(tiny_dataset, tmp_path / 'frozen',
                   freeze_backbone_epochs=1)
    cached = train(tiny_dataset, tmp_path / 'head', head_only=True)
    assert '[embed] 24 of 24 clips' in capsys.readouterr().out
    for a, b in zip(frozen, cached):
        for key in ('train_loss', 'dev_loss', 'dev_acc'):
            assert abs(a[key] - b[key]) <= 1e-5, (key, a, b)
    # the loss moved: the comparison is of a trained head
    assert frozen[0]['train_loss'] > 0
    fc_frozen, state_frozen = head(tmp_path / 'frozen' / 'epoch_1')
    fc_cached, state_cached = head(tmp_path / 'head' / 'epoch_1')
    for k in fc_frozen:
        np.testing.assert_allclose(fc_cached[k], fc_frozen[k], atol=1e-5)
    # the backbone stayed as initialised, and is in the checkpoint
    for k, v in state_frozen.items():
        if k.startswith('backbone.'):
            np.testing.assert_array_equal(np.asarray(state_cached[k]),
                                          np.asarray(v))
    assert any(k.startswith('backbone.conv_block1') for k in state_cached)


def test_embedding_cache_is_reused_and_follows_changes(tiny_dataset,
                                                       tmp_path, capsys):
    import shutil
    data = tmp_path / 'data'
    shutil.copytree(tiny_dataset, data)
    out = tmp_path / 'run'
    train(data, out, head_only=True)
    entries = sorted((out / 'embeddings').rglob('*.npz'))
    assert len(entries) == 30
    capsys.readouterr()
    # more epochs and a resume: nothing embedded again
    train(data, out, head_only=True, epochs=2, resume=True)
    assert '[embed]' not in capsys.readouterr().out
    # a changed file is embedded again, alone
    wav = sorted((data / 'audio').glob('*.wav'))[0]
    os.utime(wav, ns=(wav.stat().st_atime_ns, wav.stat().st_mtime_ns + 10**9))
    train(data, out, head_only=True, epochs=3, resume=True)
    assert '[embed] 1 of ' in capsys.readouterr().out


@pytest.mark.parametrize('hidden', [0, 16])
def test_head_only_checkpoint_predicts_and_exports(tiny_dataset, tmp_path,
                                                   hidden):
    out = tmp_path / 'run'
    train(tiny_dataset, out, head_only=True, epochs=2, head_hidden=hidden)
    ckpt = out / 'epoch_2' / 'model.pdparams'
    model = open_model(checkpoint=ckpt, device='cpu')
    shapes = {k: list(v.shape) for k, v in head(out / 'epoch_2')[0].items()}
    assert shapes == ({'fc.weight': [512, 3], 'fc.bias': [3]} if not hidden
                      else {'fc.0.weight': [512, 16], 'fc.0.bias': [16],
                            'fc.3.weight': [16, 3], 'fc.3.bias': [3]})
    exported = open_model(model_dir=export(ckpt, tmp_path / 'export'),
                          device='cpu', cpu_threads=1)
    x = [np.random.default_rng(0).standard_normal(16000).astype('float32')]
    np.testing.assert_allclose(exported.scores(x), model.scores(x),
                               atol=1e-5)
    assert paddle.in_dynamic_mode()


def test_head_only_refuses_data_parallel_flags(tiny_dataset, tmp_path,
                                               monkeypatch):
    from paddlespeech.cls.errors import UserError
    monkeypatch.setattr('paddle.distributed.get_world_size', lambda: 2)
    with pytest.raises(UserError, match='head_only'):
        train(tiny_dataset, tmp_path / 'x', head_only=True)


def test_segments_of_a_manifest_are_embedded_alone(tmp_path):
    """Manifest rows with start/end (the review page's export): each
    segment is embedded on its own, as open_model embeds that part of the
    file."""
    import soundfile as sf
    from paddlespeech.cls.audio import Segment, load_audio
    from paddlespeech.cls.embeddings import _clip_key
    sr, rng = 32000, np.random.default_rng(0)
    t = np.arange(sr // 2) / sr
    rows = ['path,label,start,end,fold']
    for i in range(6):
        tone = 0.3 * np.sin(2 * np.pi * (300 + 40 * i) * t)
        noise = 0.1 * rng.standard_normal(sr // 2)
        sf.write(tmp_path / f'rec{i}.wav', np.concatenate([tone, noise]), sr)
        rows += [f'rec{i}.wav,tone,0,0.5,{i % 3 + 1}',
                 f'rec{i}.wav,noise,0.5,1.0,{i % 3 + 1}']
    (tmp_path / 'manifest.csv').write_text('\n'.join(rows) + '\n')
    out = tmp_path / 'run'
    train(tmp_path / 'manifest.csv', out, head_only=True, batch_size=4)
    entries = {p.stem: p for p in (out / 'embeddings').rglob('*.npz')}
    assert len(entries) == 12
    model = open_model(checkpoint=out / 'epoch_1' / 'model.pdparams',
                       device='cpu')
    for start, end in ((0.0, 0.5), (0.5, 1.0)):
        seg = Segment(str(tmp_path / 'rec4.wav'), start, end)
        with np.load(entries[_clip_key(seg)]) as z:
            cached = z['embedding']
        assert cached.shape == (1, 512)
        direct = model.embeddings([load_audio(seg, sr)])
        np.testing.assert_allclose(cached, direct, rtol=1e-5, atol=1e-4)
    tone, noise = (np.load(entries[_clip_key(Segment(
        str(tmp_path / 'rec4.wav'), a, b))])['embedding'] for a, b in
        ((0.0, 0.5), (0.5, 1.0)))
    assert np.abs(tone - noise).max() > 1e-2


def test_init_checkpoint_gives_the_backbone_of_another_run(
        trained_checkpoint, tiny_dataset, tmp_path):
    """A checkpoint of 3 classes starts a 2-class run: its backbone comes
    over (kept exactly by head-only training), its head does not."""
    import csv
    rows = list(csv.DictReader(open(tiny_dataset / 'meta' / 'esc50.csv')))
    keep = sorted({r['category'] for r in rows})[:2]
    lines = ['path,label,fold'] + [
        f'{tiny_dataset / "audio" / r["filename"]},{r["category"]},'
        f'{r["fold"]}' for r in rows if r['category'] in keep]
    (tmp_path / 'two.csv').write_text('\n'.join(lines) + '\n')
    out = tmp_path / 'run'
    train(tmp_path / 'two.csv', out, head_only=True,
          init_checkpoint=str(trained_checkpoint))
    start, _ = read_state(trained_checkpoint)
    _, state = head(out / 'epoch_1')
    backbone = [k for k in start if k.startswith('backbone.')]
    assert len(backbone) > 10
    for k in backbone:
        np.testing.assert_array_equal(np.asarray(state[k]),
                                      np.asarray(start[k]))
    assert list(np.asarray(state['fc.weight']).shape) == [512, 2]


def test_init_checkpoint_with_other_features_is_refused(
        trained_checkpoint, tiny_dataset, tmp_path):
    from paddlespeech.cls.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match=r'other feature settings '
                       r'\(n_mels=64 \(model: 32\)\)'):
        (tmp_path / 'c.yaml').write_text('feature:\n  n_mels: 32\n')
        train(tiny_dataset, tmp_path / 'run', tmp_path / 'c.yaml',
              init_checkpoint=str(trained_checkpoint))


def test_embed_augment_caches_augmented_copies(tiny_dataset, tmp_path,
                                                capsys):
    """embed_augment: 2 with SpecAugment: each training window has its
    own embedding and two of masked log-mel, cached apart (the dev set
    has none); a second run embeds nothing; the copies differ from the
    clip's own embedding and from each other."""
    from paddlespeech.cls.errors import UserError
    conf = tmp_path / 'aug.yaml'
    conf.write_text('augment:\n  spec_time_masks: 2\n  spec_time_width: 8\n'
                    '  spec_freq_masks: 2\n  spec_freq_width: 8\n')
    out = tmp_path / 'run'
    train(tiny_dataset, out, conf, head_only=True, embed_augment=2)
    text = capsys.readouterr().out
    assert '[embed] augmented copy 2 of 24 of 24 clips' in text
    assert 'step 9/9' in text  # 3 x 24 windows in batches of 8
    folders = sorted((out / 'embeddings').iterdir())
    assert len(folders) == 3  # plain (train and dev), copy 1, copy 2
    sizes = sorted(len(list(f.glob('*.npz'))) for f in folders)
    assert sizes == [24, 24, 30]
    clip = sorted(folders[0].glob('*.npz'))[0].name
    found = [np.load(f / clip)['embedding'] for f in folders
             if (f / clip).is_file()]
    assert len(found) == 3
    for a in range(3):
        for b in range(a):
            assert np.abs(found[a] - found[b]).max() > 1e-3
    train(tiny_dataset, out, conf, head_only=True, embed_augment=2,
          epochs=2, resume=True)
    assert '[embed]' not in capsys.readouterr().out
    with pytest.raises(UserError, match='needs an augment: section'):
        train(tiny_dataset, tmp_path / 'plain', head_only=True,
              embed_augment=1)
