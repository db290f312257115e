"""Reference PyTorch PANNs (CNN14 / CNN10 / CNN6) for parity tests.

Test helper, not a test module.  It builds the original PyTorch models of
Kong et al., "PANNs: Large-Scale Pretrained Audio Neural Networks for Audio
Pattern Recognition" (qiuqiangkong/audioset_tagging_cnn, ``pytorch/models.py``):

* ``Cnn14`` is taken from the ``panns_inference`` package as is;
* ``Cnn10`` and ``Cnn6`` are not shipped by ``panns_inference``, so they are
  written out here, mirroring the original ``models.py`` line by line and
  reusing ``panns_inference``'s ``ConvBlock``, ``init_layer``, ``init_bn``
  and the torchlibrosa front end.

Everything is built with random weights (no download): ``make_reference``
also randomises every BatchNorm's affine parameters *and* running statistics,
so a converter that drops or mislabels ``running_mean`` / ``running_var``
shows up as a numeric difference.

Needs ``torch``, ``torchlibrosa`` and ``panns_inference`` (plus matplotlib,
which ``panns_inference`` imports); torch is imported lazily, so importing
this module alone does not require it.  Tests should guard with
``pytest.importorskip('torch')`` / ``pytest.importorskip('panns_inference')``.

``panns_inference`` downloads ``~/panns_data/class_labels_indices.csv`` with
wget when it is first imported; :func:`import_panns_inference` points HOME at
a temporary directory that already holds the repository's copy of that csv,
so the import needs no network and leaves the real home untouched.
"""
import os
import shutil
import sys
import tempfile

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS_CSV = os.path.join(REPO_ROOT, 'paddlespeech', 'cls', 'models', 'panns',
                          'assets', 'class_labels_indices.csv')

# Front-end settings of every released PANNs AudioSet checkpoint.
SAMPLE_RATE = 32000
WINDOW_SIZE = 1024
HOP_SIZE = 320
MEL_BINS = 64
FMIN = 50
FMAX = 14000
CLASSES_NUM = 527

ARCHS = ('cnn14', 'cnn10', 'cnn6')

# Keys of the reference state dict that belong to the (frozen, non-learned)
# torchlibrosa front end rather than to the network itself.
FRONT_END_PREFIXES = ('spectrogram_extractor.', 'logmel_extractor.')

_cache = {}


def import_panns_inference():
    """Import and return the ``panns_inference`` module without network.

    ``panns_inference.config`` reads ``Path.home()/panns_data/
    class_labels_indices.csv`` at import time and shells out to wget when the
    file is missing.  HOME is pointed at a fresh temporary directory holding a
    copy of the repository's csv for the duration of the import, then
    restored; the temporary directory is removed afterwards (the labels are
    read once, at import).
    """
    if 'panns_inference' in sys.modules:
        return sys.modules['panns_inference']
    if not os.path.isfile(LABELS_CSV):
        raise FileNotFoundError(LABELS_CSV)

    home = tempfile.mkdtemp(prefix='panns_home_')
    os.makedirs(os.path.join(home, 'panns_data'))
    shutil.copyfile(LABELS_CSV,
                    os.path.join(home, 'panns_data', 'class_labels_indices.csv'))
    old_home = os.environ.get('HOME')
    os.environ['HOME'] = home
    # panns_inference imports matplotlib.pyplot: never try a GUI backend.
    os.environ.setdefault('MPLBACKEND', 'Agg')
    try:
        import panns_inference
    finally:
        if old_home is None:
            os.environ.pop('HOME', None)
        else:
            os.environ['HOME'] = old_home
        shutil.rmtree(home, ignore_errors=True)

    if panns_inference.config.classes_num != CLASSES_NUM:
        raise RuntimeError('panns_inference read %d labels, expected %d' %
                           (panns_inference.config.classes_num, CLASSES_NUM))
    return panns_inference


def _reference_classes():
    """Build (once) and return ``{'cnn14': Cnn14, 'cnn10': Cnn10, 'cnn6': Cnn6}``."""
    if 'classes' in _cache:
        return _cache['classes']

    import_panns_inference()
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from panns_inference.models import Cnn14, ConvBlock, init_bn, init_layer
    from panns_inference.pytorch_utils import do_mixup
    from torchlibrosa.augmentation import SpecAugmentation
    from torchlibrosa.stft import LogmelFilterBank, Spectrogram

    class ConvBlock5x5(nn.Module):
        def __init__(self, in_channels, out_channels):

            super(ConvBlock5x5, self).__init__()

            self.conv1 = nn.Conv2d(in_channels=in_channels,
                                   out_channels=out_channels,
                                   kernel_size=(5, 5), stride=(1, 1),
                                   padding=(2, 2), bias=False)

            self.bn1 = nn.BatchNorm2d(out_channels)

            self.init_weight()

        def init_weight(self):
            init_layer(self.conv1)
            init_bn(self.bn1)

        def forward(self, input, pool_size=(2, 2), pool_type='avg'):

            x = input
            x = F.relu_(self.bn1(self.conv1(x)))
            if pool_type == 'max':
                x = F.max_pool2d(x, kernel_size=pool_size)
            elif pool_type == 'avg':
                x = F.avg_pool2d(x, kernel_size=pool_size)
            elif pool_type == 'avg+max':
                x1 = F.avg_pool2d(x, kernel_size=pool_size)
                x2 = F.max_pool2d(x, kernel_size=pool_size)
                x = x1 + x2
            else:
                raise Exception('Incorrect argument!')

            return x

    class _Cnn4Blocks(nn.Module):
        """Shared body of the original ``Cnn6`` and ``Cnn10``.

        The two classes in ``models.py`` are identical except for the block
        type, so the code is written once; the module tree (and therefore
        the state-dict keys) is exactly the original's.
        """
        block = None

        def __init__(self, sample_rate, window_size, hop_size, mel_bins, fmin,
                     fmax, classes_num):

            super(_Cnn4Blocks, self).__init__()

            window = 'hann'
            center = True
            pad_mode = 'reflect'
            ref = 1.0
            amin = 1e-10
            top_db = None

            # Spectrogram extractor
            self.spectrogram_extractor = Spectrogram(
                n_fft=window_size, hop_length=hop_size, win_length=window_size,
                window=window, center=center, pad_mode=pad_mode,
                freeze_parameters=True)

            # Logmel feature extractor
            self.logmel_extractor = LogmelFilterBank(
                sr=sample_rate, n_fft=window_size, n_mels=mel_bins, fmin=fmin,
                fmax=fmax, ref=ref, amin=amin, top_db=top_db,
                freeze_parameters=True)

            # Spec augmenter
            self.spec_augmenter = SpecAugmentation(
                time_drop_width=64, time_stripes_num=2, freq_drop_width=8,
                freq_stripes_num=2)

            self.bn0 = nn.BatchNorm2d(64)

            block = type(self).block
            self.conv_block1 = block(in_channels=1, out_channels=64)
            self.conv_block2 = block(in_channels=64, out_channels=128)
            self.conv_block3 = block(in_channels=128, out_channels=256)
            self.conv_block4 = block(in_channels=256, out_channels=512)

            self.fc1 = nn.Linear(512, 512, bias=True)
            self.fc_audioset = nn.Linear(512, classes_num, bias=True)

            self.init_weight()

        def init_weight(self):
            init_bn(self.bn0)
            init_layer(self.fc1)
            init_layer(self.fc_audioset)

        def forward(self, input, mixup_lambda=None):
            """Input: (batch_size, data_length)"""

            x = self.spectrogram_extractor(input)   # (batch_size, 1, time_steps, freq_bins)
            x = self.logmel_extractor(x)    # (batch_size, 1, time_steps, mel_bins)

            x = x.transpose(1, 3)
            x = self.bn0(x)
            x = x.transpose(1, 3)

            if self.training:
                x = self.spec_augmenter(x)

            # Mixup on spectrogram
            if self.training and mixup_lambda is not None:
                x = do_mixup(x, mixup_lambda)

            x = self.conv_block1(x, pool_size=(2, 2), pool_type='avg')
            x = F.dropout(x, p=0.2, training=self.training)
            x = self.conv_block2(x, pool_size=(2, 2), pool_type='avg')
            x = F.dropout(x, p=0.2, training=self.training)
            x = self.conv_block3(x, pool_size=(2, 2), pool_type='avg')
            x = F.dropout(x, p=0.2, training=self.training)
            x = self.conv_block4(x, pool_size=(2, 2), pool_type='avg')
            x = F.dropout(x, p=0.2, training=self.training)
            x = torch.mean(x, dim=3)

            (x1, _) = torch.max(x, dim=2)
            x2 = torch.mean(x, dim=2)
            x = x1 + x2
            x = F.dropout(x, p=0.5, training=self.training)
            x = F.relu_(self.fc1(x))
            embedding = F.dropout(x, p=0.5, training=self.training)
            clipwise_output = torch.sigmoid(self.fc_audioset(x))

            output_dict = {'clipwise_output': clipwise_output,
                           'embedding': embedding}

            return output_dict

    class Cnn10(_Cnn4Blocks):
        """Four double-3x3 ``ConvBlock``s (64, 128, 256, 512)."""
        block = ConvBlock

    class Cnn6(_Cnn4Blocks):
        """Four single-5x5 ``ConvBlock5x5``s (64, 128, 256, 512)."""
        block = ConvBlock5x5

    classes = {'cnn14': Cnn14, 'cnn10': Cnn10, 'cnn6': Cnn6,
               'ConvBlock5x5': ConvBlock5x5}
    _cache['classes'] = classes
    return classes


def _check_arch(arch):
    arch = arch.lower()
    if arch not in ARCHS:
        raise ValueError('unknown arch %r, expected one of %s' % (arch, ARCHS))
    return arch


def build_reference(arch):
    """The reference model with its original initialisation (train mode)."""
    cls = _reference_classes()[_check_arch(arch)]
    return cls(sample_rate=SAMPLE_RATE, window_size=WINDOW_SIZE,
               hop_size=HOP_SIZE, mel_bins=MEL_BINS, fmin=FMIN, fmax=FMAX,
               classes_num=CLASSES_NUM)


def make_reference(arch, seed=0):
    """Reference model in eval mode, with random weights and BN statistics.

    Convolution and linear weights get the original Xavier initialisation
    drawn from ``seed``; linear biases and every BatchNorm's ``weight``,
    ``bias``, ``running_mean`` and ``running_var`` are then randomised too, so
    every tensor of the checkpoint influences the output.  The global torch
    RNG state is left untouched.
    """
    import torch
    import torch.nn as nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_reference(arch)
    gen = torch.Generator().manual_seed(seed + 1)

    def uniform(shape, low, high):
        return low + (high - low) * torch.rand(shape, generator=gen)

    def normal(shape, std):
        return std * torch.randn(shape, generator=gen)

    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                if name == 'bn0':
                    # bn0 sees raw log-mel in dB (roughly -100 .. +20).
                    module.running_mean.copy_(-20.0 + normal(n, 5.0))
                    module.running_var.copy_(uniform(n, 50.0, 150.0))
                else:
                    module.running_mean.copy_(normal(n, 0.2))
                    module.running_var.copy_(uniform(n, 0.5, 2.0))
                module.weight.copy_(uniform(n, 0.5, 1.5))
                module.bias.copy_(normal(n, 0.1))
                module.num_batches_tracked.fill_(1000)
            elif isinstance(module, nn.Linear):
                module.bias.copy_(normal(module.bias.shape, 0.05))
    model.eval()
    return model


def calibrate_batchnorm(model, waveform, seed=0):
    """Re-draw every BN's running statistics around those of ``waveform``.

    With the blind random statistics of :func:`make_reference`, CNN14's
    deep layers drift into a regime where the output hardly depends on the
    input (shifting the log-mel by 0.1 dB moves its scores by ~2e-6), so a
    parity test at 1e-4 could not tell a wrong front end from a right one.
    Here each BatchNorm, in forward order, measures its input per channel
    and gets ``running_mean = mean + N(0, 0.2) * std`` and ``running_var =
    var * U(0.5, 2)``: still random and non-trivial, but activations stay
    normalised and the outputs follow the input.  Returns ``model`` (eval).
    """
    import torch
    import torch.nn as nn

    gen = torch.Generator().manual_seed(seed + 2)

    def redraw(module, inputs):
        x = inputs[0]
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False).clamp_min(1e-6)
        n = module.num_features
        module.running_mean.copy_(mean + 0.2 * var.sqrt() *
                                  torch.randn(n, generator=gen))
        module.running_var.copy_(var * (0.5 + 1.5 * torch.rand(
            n, generator=gen)))

    model.eval()
    hooks = [m.register_forward_pre_hook(redraw) for m in model.modules()
             if isinstance(m, nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            model(_as_tensor(waveform))
    finally:
        for hook in hooks:
            hook.remove()
    return model


def save_reference_checkpoint(model, path):
    """Save ``model`` as the released PANNs checkpoints are: ``{'model': sd}``.

    The state dict is the full original one, front-end buffers
    (``spectrogram_extractor.*``, ``logmel_extractor.melW``) and BatchNorm
    ``num_batches_tracked`` included.
    """
    import torch
    torch.save({'model': model.state_dict()}, path)
    return path


def _as_tensor(waveform):
    import torch
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim == 1:
        waveform = waveform[None, :]
    if waveform.ndim != 2:
        raise ValueError('waveform must be [batch, samples], got shape %s' %
                         (waveform.shape, ))
    return torch.from_numpy(np.ascontiguousarray(waveform))


def reference_outputs(model, waveform):
    """Run ``model`` on a float32 waveform ``[B, samples]`` (32 kHz).

    Returns ``(clipwise_output [B, 527], embedding [B, emb])`` as float64
    numpy arrays.  The model must already be in eval mode (as returned by
    :func:`make_reference`).
    """
    import torch
    with torch.no_grad():
        out = model(_as_tensor(waveform))
    return (out['clipwise_output'].double().numpy(),
            out['embedding'].double().numpy())


def _front_end():
    if 'front_end' not in _cache:
        import torch.nn as nn
        import_panns_inference()
        from torchlibrosa.stft import LogmelFilterBank, Spectrogram
        # Same arguments as in every reference model's __init__.
        front = nn.Sequential(
            Spectrogram(n_fft=WINDOW_SIZE, hop_length=HOP_SIZE,
                        win_length=WINDOW_SIZE, window='hann', center=True,
                        pad_mode='reflect', freeze_parameters=True),
            LogmelFilterBank(sr=SAMPLE_RATE, n_fft=WINDOW_SIZE,
                             n_mels=MEL_BINS, fmin=FMIN, fmax=FMAX, ref=1.0,
                             amin=1e-10, top_db=None, freeze_parameters=True))
        front.eval()
        _cache['front_end'] = front
    return _cache['front_end']


def reference_logmel(waveform):
    """The reference torchlibrosa log-mel of ``waveform`` ``[B, samples]``.

    Returns float32 numpy ``[B, 1, frames, 64]`` with
    ``frames = samples // 320 + 1`` (centred, reflect-padded STFT) -- exactly
    what the reference models feed to ``bn0``.
    """
    import torch
    with torch.no_grad():
        return _front_end()(_as_tensor(waveform)).numpy()


def count_parameters(model, include_front_end=False):
    """Number of parameters of a reference model.

    By default the frozen torchlibrosa front end (STFT conv kernels and the
    mel matrix, which are ``nn.Parameter``s in torchlibrosa) is left out, so
    the count is comparable with the Paddle models, which take log-mel input.
    """
    return sum(p.numel() for name, p in model.named_parameters()
               if include_front_end or not name.startswith(FRONT_END_PREFIXES))


def test_waveforms(seconds=2.5, seed=0):
    """Real-looking 32 kHz clips ``[4, samples]`` (float32, within +-1).

    A harmonic tone, pink-ish noise, a log chirp and a short burst padded
    with exact digital silence; every clip has a faint noise floor, as
    recordings do, so no mel bin is empty (float32 round-off in a
    completely empty bin is noise, not a property of either front end).
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE

    def floor():
        return 1e-3 * rng.standard_normal(n)

    tone = sum(0.3 / k * np.sin(2 * np.pi * 440 * k * t) for k in (1, 2, 3))
    white = rng.standard_normal(n)
    pink = np.fft.irfft(np.fft.rfft(white) /
                        np.sqrt(np.arange(n // 2 + 1) + 1.0), n)
    pink *= 0.3 / np.abs(pink).max()
    sweep = 0.4 * np.sin(2 * np.pi * 100 * seconds / np.log(100) *
                         (100 ** (t / seconds) - 1))
    burst = np.zeros(n)
    start, stop = n // 3, n // 3 + n // 4
    burst[start:stop] = 0.5 * (rng.standard_normal(stop - start) *
                               np.hanning(stop - start)) + floor()[start:stop]
    clips = np.stack([tone + floor(), pink + floor(), sweep + floor(), burst])
    return clips.astype(np.float32)


test_waveforms.__test__ = False  # a helper, not a pytest test
