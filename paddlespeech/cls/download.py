"""Verified downloads and safe archive extraction.

A download goes to ``<dest>.<random>.part`` (private to the process, so
concurrent downloaders never write into each other's file) and is renamed to
``dest`` only after it completed and its size and md5 (when known) matched,
so the cache never holds a truncated or corrupted file. Extraction refuses
archive members that would land outside the target directory.
"""
import hashlib
import http.client
import os
import secrets
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from .errors import UserError


class DownloadError(UserError):
    """A download or extraction failed; the message says what to do instead."""


def md5sum(path, chunk=1 << 20):
    h = hashlib.md5()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


def download(url, dest, md5=None, timeout=30, hint=''):
    """Fetch ``url`` to ``dest`` unless a verified copy is already there."""
    dest = Path(dest)
    stale = ''
    if dest.is_file():
        if md5 is None or (found := md5sum(dest)) == md5:
            return dest
        stale = (f' (the existing {dest} has md5 {found}, not {md5}, and is '
                 f'replaced once a download succeeds)')
    part = dest.with_name(f'{dest.name}.{secrets.token_hex(4)}.part')
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get('Content-Length') or 0) or None
            with open(part, 'wb') as f, tqdm(
                    total=total, unit='B', unit_scale=True,
                    desc=f'download {dest.name}', leave=False) as bar:
                for block in iter(lambda: resp.read(1 << 20), b''):
                    f.write(block)
                    bar.update(len(block))
        size = part.stat().st_size
        if total is not None and size != total:
            raise DownloadError(f'incomplete: got {size} of {total} bytes')
        if md5 is not None and (got := md5sum(part)) != md5:
            raise DownloadError(f'checksum mismatch: expected md5 {md5}, '
                                f'got {got}')
        os.replace(part, dest)
        return dest
    except (urllib.error.URLError, http.client.HTTPException, OSError,
            DownloadError) as e:
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        raise DownloadError(f'cannot download {url} to {dest}: '
                            f'{reason}{stale}. {hint}'.strip()) from e
    finally:
        part.unlink(missing_ok=True)


def _check_member(name, target, is_link=False):
    resolved = (target / name).resolve()
    if is_link or os.path.isabs(name) or (
            target != resolved and target not in resolved.parents):
        raise DownloadError(f'refusing archive member {name!r}: it would '
                            f'be written outside {target} or is a link')


def extract(archive, target):
    """Extract a .zip / .tar(.gz) into ``target``, rejecting unsafe members."""
    archive, target = Path(archive), Path(target).resolve()
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
                _check_member(info.filename, target, is_link)
            z.extractall(target)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            for m in t.getmembers():
                if not (m.isfile() or m.isdir()):
                    _check_member(m.name, target, is_link=True)
                _check_member(m.name, target)
            if hasattr(tarfile, 'data_filter'):  # Python 3.9.17+, 3.11.4+
                t.extractall(target, filter='data')
            else:  # the checks above are the whole defence here
                t.extractall(target)
    else:
        raise DownloadError(f'{archive} is neither a zip nor a tar archive')
    return target
