"""Where pretrained PANNs weights come from, where they are cached, and the
check that a state dict really fits the model before it is loaded.

``pretrained=True`` uses an explicit ``pretrained_path`` if given, else the
cache (``$PADDLESPEECH_CLS_HOME``, default ``~/.cache/paddlespeech/cls``); if
the cache lacks the weights, they are fetched from two sources in turn:
PaddleSpeech's model archive (md5-verified, kept next to the weights, the
weights extracted from it), then the plain ``.pdparams`` file upstream's
recipe loads (no published md5: it must load and fit the model). Either way
the file is renamed into place only when complete and checked, so the cache
only ever holds usable files.

Weights are checked by name and shape because ``set_state_dict`` merely
warns about tensors it skips: a wrong file would otherwise silently leave
the model with random weights.
"""
import os
import secrets
import tempfile
from pathlib import Path
from urllib.parse import quote

from ...download import DownloadError, download, extract
from ...errors import UserError

CACHE_ENV = 'PADDLESPEECH_CLS_HOME'
ORIGINAL_URL = 'https://zenodo.org/record/3987831/files/{}'
CONVERT_CMD = 'python -m paddlespeech.cls.exps.panns.convert'


class WeightsError(UserError):
    """Weights that are missing, unreadable or do not fit the model."""


def cache_dir():
    return Path(os.environ.get(CACHE_ENV) or Path.home() / '.cache' /
                'paddlespeech' / 'cls').expanduser()


def cached_weights_path(backbone):
    return cache_dir() / f'panns_{backbone.name}.pdparams'


def archive_path(backbone):
    return cache_dir() / Path(backbone.archive).name


def offline_help(backbone):
    """Where the weights belong and how to get them there without network."""
    arch, dest = backbone.name, cached_weights_path(backbone)
    url, md5, original = backbone.archive, backbone.archive_md5, \
        backbone.original
    return (f'The weights are expected at {dest}. Alternatives: place them '
            f'there (e.g. {backbone.pdparams} downloaded '
            f'elsewhere), or place '
            f'{url} (md5 {md5}) at {archive_path(backbone)}, or convert the '
            f'original PyTorch checkpoint {original} '
            f'({ORIGINAL_URL.format(quote(original))}) with `{CONVERT_CMD} '
            f'--arch {arch} --input {original} --output {dest}`, or pass '
            f'--pretrained_path (config key pretrained_path) pointing at a '
            f'local .pdparams; {CACHE_ENV} moves the cache directory.')


def fetch_pretrained(backbone):
    """Path of the cached AudioSet weights of a registry entry
    (:class:`.registry.Backbone`); fetches them if needed, from the
    archive, else the plain ``.pdparams`` file. One error, listing what
    was tried, when neither works."""
    dest = cached_weights_path(backbone)
    if dest.is_file():
        return dest
    tried = []
    for fetch in (_from_archive, _from_pdparams):
        try:
            fetch(backbone, dest)
            return dest
        except (DownloadError, WeightsError) as e:
            tried.append(str(e))
    raise DownloadError(f'cannot fetch the {backbone.name} weights: '
                        f'{"; then ".join(tried)}. {offline_help(backbone)}')


def _from_archive(backbone, dest):
    arch, url = backbone.name, backbone.archive
    archive = download(url, archive_path(backbone), md5=backbone.archive_md5)
    # A private directory per process: concurrent ranks never see each
    # other's half-extracted files, and the rename into place is atomic.
    with tempfile.TemporaryDirectory(dir=dest.parent,
                                     prefix=f'.{arch}-extract-') as tmp:
        found = sorted(extract(archive, tmp).rglob(f'*{arch}*.pdparams'))
        if not found:
            raise DownloadError(f'{archive} (from {url}) holds no {arch} '
                                f'.pdparams file')
        os.replace(found[0], dest)


def _from_pdparams(backbone, dest):
    part = dest.with_name(f'.{dest.name}.{secrets.token_hex(4)}.download')
    try:
        download(backbone.pdparams, part)
        check_weights(part, backbone)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


def load_pretrained(backbone, pretrained_path=None):
    """State dict of the AudioSet-pretrained ``backbone``, checked to fit."""
    path = (Path(pretrained_path).expanduser() if pretrained_path else
            fetch_pretrained(backbone))
    if not path.is_file():
        raise WeightsError(f'pretrained weights {path} not found: fix '
                           f'--pretrained_path (config key pretrained_path), '
                           f'or leave it unset to use the cached or '
                           f'downloaded {cached_weights_path(backbone)}')
    return check_weights(path, backbone)


def check_weights(path, backbone):
    """The state dict in ``path``, refused unless it fits ``backbone``."""
    state = read_weights(path, backbone.name)
    problems = fit_problems(backbone.skeleton().state_dict(), state)
    if problems:
        raise WeightsError(f'{path} does not fit {backbone.name}: '
                           f'{describe(problems)}')
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


def shapes(state):
    """``{name: shape}``; entries that are no tensors get shape None."""
    return {name: tuple(value.shape) if hasattr(value, 'shape') else None
            for name, value in state.items()}


def fit_problems(expected, given):
    """What keeps the state dict ``given`` from loading into a model whose
    state dict is ``expected``: missing, unexpected and mis-shaped tensors
    (``[]`` when it fits). Checked before loading because
    ``set_state_dict`` merely warns about tensors it skips."""
    return mismatches(shapes(expected), shapes(given))


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
