"""Where pretrained PANNs weights come from and where they are cached.

``pretrained=True`` looks, in this order, at an explicit ``pretrained_path``
and at the cache (``$PADDLESPEECH_CLS_HOME``, default
``~/.cache/paddlespeech/cls``); if neither has the file, it downloads
PaddleSpeech's model archive (md5-verified) and extracts the weights.
"""
import os
from pathlib import Path

from ...download import DownloadError, download, extract

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


def cache_dir():
    return Path(os.environ.get('PADDLESPEECH_CLS_HOME',
                               Path.home() / '.cache' / 'paddlespeech' /
                               'cls')).expanduser()


def cached_weights_path(arch):
    return cache_dir() / f'panns_{arch}.pdparams'


def fetch_pretrained(arch):
    """Path of the cached AudioSet weights of ``arch``, downloading if needed."""
    dest = cached_weights_path(arch)
    if dest.is_file():
        return dest
    url, md5 = ARCHIVES[arch]
    hint = (f'Without network access, either download {url} (or '
            f'{PDPARAMS_URL.format(arch)}) elsewhere and place the weights '
            f'at {dest}, or convert the original PyTorch checkpoint '
            f'{ORIGINAL_CKPT[arch]} with `python -m '
            f'paddlespeech.cls.models.panns.convert --arch {arch} --input '
            f'{ORIGINAL_CKPT[arch]} --output {dest}`, or pass '
            f'--pretrained_path.')
    archive = download(url, cache_dir() / Path(url).name, md5=md5, hint=hint)
    unpacked = extract(archive, cache_dir() / f'panns_{arch}')
    found = sorted(unpacked.rglob(f'*{arch}*.pdparams'))
    if not found:
        raise DownloadError(f'{archive} holds no {arch} .pdparams file. '
                            f'{hint}')
    os.replace(found[0], dest)
    return dest


def load_pretrained(arch, pretrained_path=None):
    """State dict of the AudioSet-pretrained ``arch`` backbone."""
    import paddle
    path = Path(pretrained_path) if pretrained_path else fetch_pretrained(arch)
    if not path.is_file():
        raise FileNotFoundError(f'pretrained weights not found: {path}')
    return paddle.load(str(path))
