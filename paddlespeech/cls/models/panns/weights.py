"""Where pretrained PANNs weights come from, where they are cached, and the
check that a state dict really fits the model before it is loaded.

``pretrained=True`` uses an explicit ``pretrained_path`` if given, else the
cache (``$PADDLESPEECH_CLS_HOME``, default ``~/.cache/paddlespeech/cls``); if
the cache lacks the weights, PaddleSpeech's model archive is downloaded
(md5-verified, kept next to the weights) and the weights are extracted and
renamed into place, so the cache only ever holds complete files.

Weights are checked by name and shape because ``set_state_dict`` merely
warns about tensors it skips: a wrong file would otherwise silently leave
the model with random weights.
"""
import os
import tempfile
from pathlib import Path
from urllib.parse import quote

from ...download import DownloadError, download, extract
from ...errors import UserError

CACHE_ENV = 'PADDLESPEECH_CLS_HOME'
ARCHIVES = {
    'cnn14': ('https://paddlespeech.bj.bcebos.com/cls/panns_cnn14.tar.gz',
              'e3b9b5614a1595001161d0ab95edee97'),
    'cnn10': ('https://paddlespeech.bj.bcebos.com/cls/panns_cnn10.tar.gz',
              'cb8427b22176cc2116367d14847f5413'),
    'cnn6': ('https://paddlespeech.bj.bcebos.com/cls/panns_cnn6.tar.gz',
             '4cf09194a95df024fd12f84712cf0f9c'),
}
PDPARAMS_URL = 'https://bj.bcebos.com/paddleaudio/models/panns_{}.pdparams'
ORIGINAL_CKPT = {
    'cnn14': 'Cnn14_mAP=0.431.pth',
    'cnn10': 'Cnn10_mAP=0.380.pth',
    'cnn6': 'Cnn6_mAP=0.343.pth',
}
ORIGINAL_URL = 'https://zenodo.org/record/3987831/files/{}'
CONVERT_CMD = 'python -m paddlespeech.cls.models.panns.convert'


class WeightsError(UserError):
    """Weights that are missing, unreadable or do not fit the model."""


def cache_dir():
    return Path(os.environ.get(CACHE_ENV) or Path.home() / '.cache' /
                'paddlespeech' / 'cls').expanduser()


def cached_weights_path(arch):
    return cache_dir() / f'panns_{arch}.pdparams'


def archive_path(arch):
    return cache_dir() / Path(ARCHIVES[arch][0]).name


def offline_help(arch):
    """Where the weights belong and how to get them there without network."""
    dest, (url, md5) = cached_weights_path(arch), ARCHIVES[arch]
    original = ORIGINAL_CKPT[arch]
    return (f'The weights are expected at {dest}. Alternatives: place them '
            f'there (e.g. {PDPARAMS_URL.format(arch)} downloaded '
            f'elsewhere), or place '
            f'{url} (md5 {md5}) at {archive_path(arch)}, or convert the '
            f'original PyTorch checkpoint {original} '
            f'({ORIGINAL_URL.format(quote(original))}) with `{CONVERT_CMD} '
            f'--arch {arch} --input {original} --output {dest}`, or pass '
            f'--pretrained_path (config key pretrained_path) pointing at a '
            f'local .pdparams; {CACHE_ENV} moves the cache directory.')


def fetch_pretrained(arch):
    """Path of the cached AudioSet weights of ``arch``; downloads if needed."""
    dest = cached_weights_path(arch)
    if dest.is_file():
        return dest
    url, md5 = ARCHIVES[arch]
    hint = offline_help(arch)
    archive = download(url, archive_path(arch), md5=md5, hint=hint)
    # A private directory per process: concurrent ranks never see each
    # other's half-extracted files, and the rename into place is atomic.
    with tempfile.TemporaryDirectory(dir=dest.parent,
                                     prefix=f'.{arch}-extract-') as tmp:
        found = sorted(extract(archive, tmp).rglob(f'*{arch}*.pdparams'))
        if not found:
            raise DownloadError(f'{archive} (from {url}) holds no {arch} '
                                f'.pdparams file. {hint}')
        os.replace(found[0], dest)
    return dest


def load_pretrained(arch, pretrained_path=None):
    """State dict of the AudioSet-pretrained ``arch``, checked to fit it."""
    path = (Path(pretrained_path).expanduser() if pretrained_path else
            fetch_pretrained(arch))
    if not path.is_file():
        raise WeightsError(f'pretrained weights {path} not found: fix '
                           f'--pretrained_path (config key pretrained_path), '
                           f'or leave it unset to use the cached or '
                           f'downloaded {cached_weights_path(arch)}')
    state = read_weights(path, arch)
    check_fits(arch, state, path)
    return state


def read_weights(path, arch):
    """``paddle.load`` with errors that say what the file probably is."""
    import paddle
    try:
        state = paddle.load(str(path))
    except Exception as e:  # paddle.load raises ValueError, pickle errors ...
        raise WeightsError(
            f'cannot read {path} as Paddle weights ({e}); an original '
            f'PyTorch checkpoint must be converted first: `{CONVERT_CMD} '
            f'--arch {arch} --input {path} --output OUT.pdparams`') from e
    if not isinstance(state, dict):
        raise WeightsError(f'{path} holds a {type(state).__name__}, not a '
                           f'state dict')
    if '_meta' in state:
        raise WeightsError(f'{path} is a fine-tuned classifier checkpoint '
                           f'(train.py), not {arch} backbone weights: use it '
                           f'with predict.py --checkpoint')
    return state


def skeleton(arch):
    """``arch`` with its layers but no allocated weights: names and shapes."""
    import paddle
    from .panns import CNN6, CNN10, CNN14
    models = {'cnn14': CNN14, 'cnn10': CNN10, 'cnn6': CNN6}
    if arch not in models:
        raise WeightsError(f'unknown arch {arch!r}; choose one of '
                           f'{sorted(models)}')
    with paddle.LazyGuard():
        return models[arch]()


def shapes(state):
    """``{name: shape}``; entries that are no tensors get shape None."""
    return {name: tuple(value.shape) if hasattr(value, 'shape') else None
            for name, value in state.items()}


def mismatches(expected, given):
    """Missing, unexpected and mis-shaped tensors of two ``{name: shape}``."""
    problems = [f'missing tensor {name} {list(shape)}'
                for name, shape in expected.items() if name not in given]
    problems += [f'unexpected tensor {name}' for name in given
                 if name not in expected]
    problems += [f'tensor {name} has shape {_show(given[name])}, expected '
                 f'{list(shape)}' for name, shape in expected.items()
                 if name in given and given[name] != tuple(shape)]
    return problems


def _show(shape):
    return 'none (not a tensor)' if shape is None else list(shape)


def describe(problems, limit=6):
    shown = '; '.join(problems[:limit])
    more = len(problems) - limit
    return shown + (f'; and {more} more' if more > 0 else '')


def check_fits(arch, state, source):
    """Refuse ``state`` unless it has exactly the tensors of ``arch``."""
    problems = mismatches(shapes(skeleton(arch).state_dict()), shapes(state))
    if problems:
        raise WeightsError(f'{source} does not fit {arch}: '
                           f'{describe(problems)}')
