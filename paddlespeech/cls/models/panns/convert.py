"""Convert an original PANNs PyTorch checkpoint to Paddle weights (the
command line is ``exps/panns/convert.py``, ``paddlespeech-cls convert``).

Reads the released checkpoints of Kong et al. (``{'model': state_dict}``)
or a plain state dict. Every tensor is matched by name and shape against
the Paddle model: BatchNorm ``running_mean``/``running_var`` become
``_mean``/``_variance``, linear weights are transposed (Paddle stores them
``[in, out]``), and the torchlibrosa front end (``spectrogram_extractor.*``,
``logmel_extractor.*``) and ``num_batches_tracked`` are dropped, since
:mod:`paddlespeech.cls.features` computes the log-mel itself. Anything
missing, unexpected or mis-shaped is refused, so a converted file always
loads completely. torch is needed by the conversion only.
"""
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import paddle

from ... import atomic
from ...errors import UserError
from .registry import get_backbone
from .weights import describe, mismatches, shapes

FRONT_END_PREFIXES = ('spectrogram_extractor.', 'logmel_extractor.')
DROPPED_SUFFIXES = ('.num_batches_tracked', )
BN_STATS = {'_mean': 'running_mean', '_variance': 'running_var'}


class ConversionError(UserError):
    """A checkpoint that cannot be converted; the message names the tensors."""


def torch_layout(arch):
    """``{torch name: (paddle name, torch shape, transpose)}`` of ``arch``."""
    model = get_backbone(arch).skeleton()
    linear_weights = {f'{name}.weight'
                      for name, layer in model.named_sublayers()
                      if isinstance(layer, paddle.nn.Linear)}
    layout = {}
    for name, shape in shapes(model.state_dict()).items():
        prefix, _, leaf = name.rpartition('.')
        transpose = name in linear_weights
        layout[f'{prefix}.{BN_STATS.get(leaf, leaf)}'] = (
            name, shape[::-1] if transpose else shape, transpose)
    return layout


def is_dropped(name):
    return name.startswith(FRONT_END_PREFIXES) or name.endswith(
        DROPPED_SUFFIXES)


def _to_numpy(value):
    if hasattr(value, 'detach'):
        value = value.detach().cpu().float().numpy()
    return np.ascontiguousarray(value, dtype=np.float32)


def convert_state_dict(arch, state, source='checkpoint'):
    """Paddle state dict (float32 numpy) from an original ``arch`` state dict.

    ``state`` is ``{'model': state_dict}`` or the state dict itself.
    """
    if isinstance(state, Mapping) and isinstance(state.get('model'), Mapping):
        state = state['model']
    if not isinstance(state, Mapping):
        raise ConversionError(f'{source} holds a {type(state).__name__}, not '
                              f'a state dict')
    kept = {name: value for name, value in state.items()
            if not is_dropped(name)}
    layout = torch_layout(arch)
    problems = mismatches({name: shape for name, (_, shape, _) in
                           layout.items()}, shapes(kept))
    if problems:
        raise ConversionError(f'{source} is not an original {arch} '
                              f'checkpoint: {describe(problems)}')
    converted = {}
    for name, (paddle_name, _, transpose) in layout.items():
        value = _to_numpy(kept[name])
        converted[paddle_name] = np.ascontiguousarray(value.T) if transpose \
            else value
    return converted


def load_torch_checkpoint(path):
    """The object saved in ``path``; tensors only (no arbitrary unpickling)."""
    try:
        import torch
    except ImportError as e:
        raise ConversionError(
            'converting a PyTorch checkpoint needs torch (only this command '
            'does; training and inference do not): pip install torch') from e
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f'checkpoint {path} not found')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # torch raises several types for foreign files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else \
            type(e).__name__
        raise ConversionError(f'cannot read {path} as a PyTorch checkpoint '
                              f'({reason})') from e


def convert(arch, input_path, output_path):
    """Convert ``input_path`` and write it atomically; returns the tensors."""
    state = convert_state_dict(arch, load_torch_checkpoint(input_path),
                               source=str(input_path))
    cpu = paddle.CPUPlace()
    atomic.save({name: paddle.to_tensor(value, place=cpu)
                 for name, value in state.items()}, output_path)
    return state
