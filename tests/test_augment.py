"""Augmentations: each test checks the defining property against values
worked out by hand (or with plain numpy from the drawn parameters)."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from paddlespeech.cls.augment import (FLOOR_DB, Augmenter, mask_stripes,
                                      mixup, random_gain, sample_beta,
                                      time_shift)
from paddlespeech.cls.task import Task, soft_cross_entropy

B, T, M = 4, 20, 8
pytestmark = pytest.mark.filterwarnings(
    'ignore:When training, we now always track global')


def logmel(seed=0, batch=B):
    """Random dB values well above the floor (-60..0 dB), float32."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-60, 0, (batch, T, M)).astype(np.float32)


def eye(y, c):
    return np.eye(c, dtype=np.float32)[y]


def targets(y, c):
    """The one-hot targets a single-label task hands to augmentation."""
    return Task().targets(paddle.to_tensor(y), c)


# --- mixup ----------------------------------------------------------------

def test_mixup_injected_lambda_and_partner():
    x = np.arange(3 * 2 * 2, dtype=np.float32).reshape(3, 2, 2)
    y = paddle.to_tensor([0, 1, 2])
    xm, t, lam, perm = mixup(paddle.to_tensor(x), targets(y, 3), alpha=0.2,
                             lam=0.25, perm=[1, 2, 0])
    # 0.25 * x + 0.75 * x[[1, 2, 0]]: clip 0 is 0.25*[0..3] + 0.75*[4..7]
    np.testing.assert_array_equal(xm.numpy()[0], [[3, 4], [5, 6]])
    np.testing.assert_array_equal(xm.numpy(),
                                  0.25 * x + 0.75 * x[[1, 2, 0]])
    np.testing.assert_array_equal(t.numpy(), [[.25, .75, 0], [0, .25, .75],
                                              [.75, 0, .25]])
    np.testing.assert_array_equal(lam.numpy(), [.25] * 3)


@pytest.mark.parametrize('per_sample', [False, True])
def test_mixup_drawn(per_sample):
    paddle.seed(1)
    x, y = logmel(), np.array([0, 3, 3, 1])
    xm, t, lam, perm = mixup(paddle.to_tensor(x), targets(y, 5),
                             alpha=0.4, per_sample=per_sample)
    lam, perm = lam.numpy(), perm.numpy()
    assert sorted(perm) == list(range(B))
    assert ((lam >= 0) & (lam <= 1)).all()
    assert (len(set(lam.tolist())) == 1) != per_sample  # one lam or several
    lx = lam.reshape(B, 1, 1)
    np.testing.assert_array_equal(xm.numpy(), lx * x + (1 - lx) * x[perm])
    np.testing.assert_allclose(t.numpy().sum(1), 1, rtol=0, atol=1e-6)
    want = lam[:, None] * eye(y, 5) + (1 - lam[:, None]) * eye(y[perm], 5)
    np.testing.assert_array_equal(t.numpy(), want)


def test_lambda_is_beta_distributed():
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)) = 0.1786 for a = 0.2
    paddle.seed(2)
    lam = sample_beta(0.2, [20000]).numpy()
    assert ((lam >= 0) & (lam <= 1)).all()
    assert abs(lam.mean() - 0.5) < 0.01
    assert abs(lam.var() - 1 / 5.6) < 0.005


@pytest.mark.parametrize('alpha', [0, None])
def test_mixup_disabled_is_identity(alpha):
    x = paddle.to_tensor(logmel())
    xm, t, lam, _ = mixup(x, targets([0, 1, 2, 1], 3), alpha)
    assert xm is x
    np.testing.assert_array_equal(t.numpy(), eye([0, 1, 2, 1], 3))
    np.testing.assert_array_equal(lam.numpy(), [1] * B)


# --- SpecAugment masks ----------------------------------------------------

def test_time_mask_injected_fills_exactly_the_stripe():
    x = np.arange(2 * 5 * 2, dtype=np.float32).reshape(2, 5, 2)
    out, _, _ = mask_stripes(paddle.to_tensor(x), 1, 1, 3,
                             starts=[[1], [0]], widths=[[3], [0]])
    want = x.copy()
    want[0, 1:4] = 4.5  # mean of clip 0 = mean(0..9)
    np.testing.assert_array_equal(out.numpy(), want)


def test_freq_mask_constant_fill_and_overlap():
    x = logmel(batch=1)
    out, _, _ = mask_stripes(paddle.to_tensor(x), 2, 2, 4, fill=-100.0,
                             starts=[[1, 3]], widths=[[3, 2]])
    want = x.copy()
    want[:, :, 1:5] = -100  # bins 1-3 and 3-4 overlap: 4 bins masked
    np.testing.assert_array_equal(out.numpy(), want)


@pytest.mark.parametrize('axis,size', [(1, T), (2, M)])
def test_drawn_masks_count_equals_widths(axis, size):
    paddle.seed(3)
    batch, width = 64, 5
    x = logmel(batch=batch)
    out, starts, widths = mask_stripes(paddle.to_tensor(x), axis, 1, width,
                                       fill=7.0)
    out = out.numpy()
    starts, widths = starts.numpy()[:, 0], widths.numpy()[:, 0]
    assert widths.min() == 0 and widths.max() == width  # U{0..width}
    assert (starts >= 0).all() and (starts + widths <= size).all()
    changed = out != x
    masked = changed.any(axis=3 - axis)  # frames (axis 1) or bins (axis 2)
    np.testing.assert_array_equal(masked.sum(1), widths)
    for b in range(batch):
        idx = np.flatnonzero(masked[b])
        np.testing.assert_array_equal(idx, starts[b] + np.arange(widths[b]))
    assert (out[changed] == 7.0).all()  # whole stripes, nothing else
    assert changed.sum() == widths.sum() * (M if axis == 1 else T)


def test_two_drawn_time_masks_cover_their_union():
    paddle.seed(4)
    x = logmel()
    out, starts, widths = mask_stripes(paddle.to_tensor(x), 1, 2, 6)
    for b in range(B):
        frames = {int(s) + i for s, w in zip(starts.numpy()[b],
                                             widths.numpy()[b])
                  for i in range(w)}
        masked = np.flatnonzero((out.numpy()[b] != x[b]).any(1))
        assert set(masked.tolist()) == frames
        np.testing.assert_allclose(out.numpy()[b, sorted(frames)],
                                   x[b].mean(), rtol=1e-6)


# --- time shift and gain --------------------------------------------------

def test_time_shift_moves_by_k_and_pads_with_floor():
    x = np.broadcast_to(np.arange(1, 7, dtype=np.float32)[None, :, None],
                        (3, 6, 2)).copy()  # frame t holds t + 1
    out, _ = time_shift(paddle.to_tensor(x), 3, shifts=[2, -3, 0])
    o = out.numpy()[:, :, 0]
    np.testing.assert_array_equal(o[0], [-100, -100, 1, 2, 3, 4])
    np.testing.assert_array_equal(o[1], [4, 5, 6, -100, -100, -100])
    np.testing.assert_array_equal(o[2], [1, 2, 3, 4, 5, 6])
    rolled, _ = time_shift(paddle.to_tensor(x), 3, 'roll', shifts=[2, -3, 0])
    np.testing.assert_array_equal(rolled.numpy()[:, :, 0],
                                  [[5, 6, 1, 2, 3, 4], [4, 5, 6, 1, 2, 3],
                                   [1, 2, 3, 4, 5, 6]])


def test_drawn_time_shift():
    paddle.seed(5)
    x = logmel(batch=32)
    out, k = time_shift(paddle.to_tensor(x), 4)
    out, k = out.numpy(), k.numpy()
    assert k.min() == -4 and k.max() == 4
    for b in range(32):
        want = np.full_like(x[b], FLOOR_DB)
        if k[b] >= 0:
            want[k[b]:] = x[b, :T - k[b]]
        else:
            want[:T + k[b]] = x[b, -k[b]:]
        np.testing.assert_array_equal(out[b], want)


def test_gain_adds_g_above_floor_only():
    x = np.array([[[-100, -97, -50, 0]]], np.float32).repeat(2, 0)
    out, _ = random_gain(paddle.to_tensor(x), 6, gains=[6, -6])
    np.testing.assert_array_equal(out.numpy()[:, 0],
                                  [[-100, -91, -44, 6],
                                   [-100, -100, -56, -6]])  # -103 clamps


def test_drawn_gain():
    paddle.seed(6)
    x = logmel()
    x[:, :3] = FLOOR_DB  # silent frames
    out, g = random_gain(paddle.to_tensor(x), 6)
    g = g.numpy()
    assert (np.abs(g) <= 6).all() and len(set(g.tolist())) == B
    np.testing.assert_array_equal(out.numpy()[:, :3], FLOOR_DB)
    np.testing.assert_array_equal(out.numpy()[:, 3:],
                                  x[:, 3:] + g[:, None, None])


# --- Augmenter ------------------------------------------------------------

FULL = {'mixup_alpha': 0.2, 'spec_time_masks': 2, 'spec_time_width': 8,
        'spec_freq_masks': 2, 'spec_freq_width': 3, 'time_shift_frames': 5,
        'gain_db': 6}


def test_augmenter_does_nothing_when_not_training():
    x, y = paddle.to_tensor(logmel()), targets([0, 2, 1, 2], 3)
    aug = Augmenter(FULL)
    out, t = aug(x, y, training=False)
    assert out is x and aug.last == {}
    np.testing.assert_array_equal(t.numpy(), eye([0, 2, 1, 2], 3))
    aug.eval()  # training=None follows the layer's mode
    out, t = aug(x, y)
    assert out is x
    np.testing.assert_array_equal(t.numpy(), eye([0, 2, 1, 2], 3))
    out, _ = aug(x, y, training=True)  # explicit argument wins
    assert not np.array_equal(out.numpy(), x.numpy())


def test_augmenter_all_disabled_is_identity_in_training():
    x, y = paddle.to_tensor(logmel()), targets([0, 2, 1, 2], 3)
    out, t = Augmenter({'mixup_alpha': None, 'gain_db': 0})(x, y)
    assert out is x
    np.testing.assert_array_equal(t.numpy(), eye([0, 2, 1, 2], 3))


def test_augmenter_training_applies_everything_and_records_draws():
    paddle.seed(7)
    x, y = paddle.to_tensor(logmel()), targets([0, 2, 1, 2], 3)
    aug = Augmenter(FULL)
    out, t = aug(x, y)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert set(aug.last) == {'gains', 'shifts', 'time_masks', 'freq_masks',
                             'lam', 'perm'}
    lam, perm = aug.last['lam'].numpy(), aug.last['perm'].numpy()
    want = lam[:, None] * eye([0, 2, 1, 2], 3) \
        + (1 - lam[:, None]) * eye(np.array([0, 2, 1, 2])[perm], 3)
    np.testing.assert_array_equal(t.numpy(), want)


def test_augmenter_rejects_unknown_keys():
    with pytest.raises(ValueError, match='mixup_alfa'):
        Augmenter({'mixup_alfa': 0.2})


# --- loss -----------------------------------------------------------------

def test_soft_cross_entropy():
    rng = np.random.default_rng(0)
    logits = paddle.to_tensor(rng.normal(size=(6, 5)).astype(np.float32))
    y = paddle.to_tensor([0, 4, 2, 2, 1, 3])
    np.testing.assert_allclose(
        float(soft_cross_entropy(logits, F.one_hot(y, 5))),
        float(F.cross_entropy(logits, y)), rtol=1e-6)
    # uniform logits: -sum(t * log(1/5)) = log 5 for any soft target
    soft = paddle.to_tensor([[0.3, 0.7, 0, 0, 0], [0.2] * 5])
    np.testing.assert_allclose(
        float(soft_cross_entropy(paddle.zeros([2, 5]), soft)), np.log(5),
        rtol=1e-6)


def test_training_step_with_soft_targets():
    """Plugs into a model step: gradients reach the classifier."""
    from paddlespeech.cls.models import build_classifier
    paddle.seed(8)
    model = build_classifier('cnn6', 3)
    x = paddle.rand([4, 32, 64]) * 60 - 60  # CNN6 expects 64 mel bins
    y = paddle.to_tensor([0, 2, 1, 2])
    xa, t = Augmenter(FULL)(x, Task().targets(y, 3), training=model.training)
    loss = soft_cross_entropy(model(xa), t)
    loss.backward()
    assert np.isfinite(float(loss))
    assert any(p.grad is not None for p in model.parameters())
