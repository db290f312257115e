"""PANNs CNN14 / CNN10 / CNN6 (Kong et al., 2020) in Paddle.

Layer and parameter names follow the reference PyTorch code
(qiuqiangkong/audioset_tagging_cnn, ``models.py``) so that a converted
checkpoint maps one to one: ``bn0``, ``conv_block{i}.conv{j}``,
``conv_block{i}.bn{j}``, ``fc1``, ``fc_audioset``.

The models take log-mel features shaped ``[batch, 1, frames, mel_bins]``;
the front end lives in :mod:`paddlespeech.cls.features`, the registry
of names, weight archives and factories in :mod:`.registry`.
"""
import paddle.nn as nn
import paddle.nn.functional as F

__all__ = ['CNN14', 'CNN10', 'CNN6']

AUDIOSET_CLASSES = 527


def _pool(x, pool_size, pool_type):
    if pool_type == 'max':
        return F.max_pool2d(x, kernel_size=pool_size)
    if pool_type == 'avg':
        return F.avg_pool2d(x, kernel_size=pool_size)
    if pool_type == 'avg+max':
        return F.avg_pool2d(x, kernel_size=pool_size) + F.max_pool2d(
            x, kernel_size=pool_size)
    raise ValueError(f'unknown pool_type {pool_type!r}')


class ConvBlock(nn.Layer):
    """Two 3x3 conv + BN + ReLU, then pooling."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2D(in_channels, out_channels, 3, padding=1,
                               bias_attr=False)
        self.conv2 = nn.Conv2D(out_channels, out_channels, 3, padding=1,
                               bias_attr=False)
        self.bn1 = nn.BatchNorm2D(out_channels)
        self.bn2 = nn.BatchNorm2D(out_channels)

    def forward(self, x, pool_size=(2, 2), pool_type='avg'):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return _pool(x, pool_size, pool_type)


class ConvBlock5x5(nn.Layer):
    """One 5x5 conv + BN + ReLU, then pooling (used by CNN6)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2D(in_channels, out_channels, 5, padding=2,
                               bias_attr=False)
        self.bn1 = nn.BatchNorm2D(out_channels)

    def forward(self, x, pool_size=(2, 2), pool_type='avg'):
        x = F.relu(self.bn1(self.conv1(x)))
        return _pool(x, pool_size, pool_type)


class _PANN(nn.Layer):
    """Shared body: per-mel-bin BatchNorm, conv blocks, global pooling, fc1.

    ``extract_embedding=True`` returns the ``fc1`` embedding (what a
    classifier head is fine-tuned on); ``False`` returns the 527 AudioSet
    sigmoid scores.
    """
    block = ConvBlock
    channels = ()
    last_pool = (2, 2)

    def __init__(self, extract_embedding=True, mel_bins=64):
        super().__init__()
        self.extract_embedding = extract_embedding
        self.bn0 = nn.BatchNorm2D(mel_bins)
        in_ch = 1
        for i, out_ch in enumerate(self.channels, start=1):
            setattr(self, f'conv_block{i}', self.block(in_ch, out_ch))
            in_ch = out_ch
        self.emb_size = in_ch
        self.fc1 = nn.Linear(in_ch, in_ch)
        self.fc_audioset = nn.Linear(in_ch, AUDIOSET_CLASSES)

    def forward(self, x):
        """x: log-mel ``[batch, 1, frames, mel_bins]``."""
        x = self.embed(x)
        if self.extract_embedding:
            return F.dropout(x, p=0.5, training=self.training)
        return F.sigmoid(self.fc_audioset(x))

    def embed(self, x):
        """The ``fc1`` embedding of log-mel ``[batch, 1, frames,
        mel_bins]``, before the head's dropout: what a fine-tuned head and
        the AudioSet head read."""
        x = x.transpose([0, 3, 2, 1])
        x = self.bn0(x)
        x = x.transpose([0, 3, 2, 1])

        n_blocks = len(self.channels)
        for i in range(1, n_blocks + 1):
            block = getattr(self, f'conv_block{i}')
            pool = self.last_pool if i == n_blocks else (2, 2)
            x = block(x, pool_size=pool, pool_type='avg')
            x = F.dropout(x, p=0.2, training=self.training)

        x = x.mean(axis=3)
        x = x.max(axis=2) + x.mean(axis=2)
        x = F.dropout(x, p=0.5, training=self.training)
        return F.relu(self.fc1(x))


class CNN14(_PANN):
    """12 conv layers in six blocks, 2048-d embedding (79.7 M parameters)."""
    channels = (64, 128, 256, 512, 1024, 2048)
    last_pool = (1, 1)


class CNN10(_PANN):
    """8 conv layers in four blocks, 512-d embedding."""
    channels = (64, 128, 256, 512)


class CNN6(_PANN):
    """4 single 5x5 conv layers, 512-d embedding."""
    block = ConvBlock5x5
    channels = (64, 128, 256, 512)
