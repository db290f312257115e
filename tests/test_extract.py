"""download.extract on crafted archives: members that would land outside
the target (absolute paths, ``..``, links) are refused before anything is
written; ordinary archives extract."""
import io
import stat
import tarfile
import zipfile

import pytest

from paddlespeech.cls.download import DownloadError, extract


def make_zip(path, members):
    """``members``: ``(name, data)``, or ``(name, target, 'link')``."""
    with zipfile.ZipFile(path, 'w') as z:
        for name, data, *kind in members:
            info = zipfile.ZipInfo(name)
            if kind:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, data)
    return path


def make_tar(path, members):
    """``members``: ``(name, data)``, or ``(name, target, 'sym'|'hard')``."""
    with tarfile.open(path, 'w:gz') as t:
        for name, data, *kind in members:
            info = tarfile.TarInfo(name)
            if kind:
                info.type = tarfile.SYMTYPE if kind[0] == 'sym' else \
                    tarfile.LNKTYPE
                info.linkname = data
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(params=['data filter', 'no filter'])
def python_tarfile(request, monkeypatch):
    """Both paths of extract(): a Python whose tarfile has the ``data``
    filter, and an older one (before 3.9.17 / 3.10.12 / 3.11.4) whose
    ``extractall`` takes no ``filter`` argument. Returns the filters that
    extractall was called with."""
    calls = []
    original = tarfile.TarFile.extractall

    def extractall(self, path='.', members=None, **kw):
        calls.append(kw.get('filter'))
        if request.param == 'no filter' and 'filter' in kw:
            raise TypeError("extractall() got an unexpected keyword argument "
                            "'filter'")
        return original(self, path, members, **kw)

    if request.param == 'no filter':
        monkeypatch.delattr(tarfile, 'data_filter')
    monkeypatch.setattr(tarfile.TarFile, 'extractall', extractall)
    return calls


GOOD = [('ESC-50-master/meta/esc50.csv', b'filename\n'),
        ('ESC-50-master/audio/1-1-A-0.wav', b'RIFF')]


@pytest.mark.parametrize('make', [make_zip, make_tar])
def test_ordinary_archive_extracts(tmp_path, make, python_tarfile):
    archive = make(tmp_path / 'ok.archive', GOOD)
    out = extract(archive, tmp_path / 'data')
    if make is make_tar:
        assert python_tarfile == ['data' if hasattr(tarfile, 'data_filter')
                                  else None]
    assert (out / 'ESC-50-master' / 'meta' / 'esc50.csv').read_bytes() == \
        b'filename\n'
    assert (out / 'ESC-50-master' / 'audio' / '1-1-A-0.wav').is_file()


EVIL = {
    'parent': ('../evil.txt', b'x'),
    'nested_parent': ('ESC-50-master/../../evil.txt', b'x'),
    'absolute': ('/tmp/evil_absolute.txt', b'x'),
}
ZIP_LINKS = {'symlink': ('ESC-50-master/link', '/etc/passwd', 'link')}
TAR_LINKS = {'symlink': ('ESC-50-master/link', '/etc', 'sym'),
             'relative_symlink': ('ESC-50-master/up', '../..', 'sym'),
             'hardlink': ('ESC-50-master/hard', '/etc/passwd', 'hard')}


@pytest.mark.parametrize('make,member', [
    *[(make_zip, m) for m in {**EVIL, **ZIP_LINKS}.values()],
    *[(make_tar, m) for m in {**EVIL, **TAR_LINKS}.values()],
], ids=[f'zip-{k}' for k in {**EVIL, **ZIP_LINKS}] +
       [f'tar-{k}' for k in {**EVIL, **TAR_LINKS}])
def test_unsafe_member_is_refused_before_writing(tmp_path, make, member,
                                                python_tarfile):
    root = tmp_path / 'sandbox'
    target = root / 'data' / 'inner'
    archive = make(tmp_path / 'evil.archive', GOOD + [member])
    with pytest.raises(DownloadError, match='refusing archive member'):
        extract(archive, target)
    # nothing at all was written: not the evil member, not the good ones
    assert [p for p in root.rglob('*') if p != target and
            p not in target.parents] == []
    assert not (root / 'data' / 'evil.txt').exists()
    assert not (tmp_path / 'evil.txt').exists()


def test_not_an_archive(tmp_path):
    junk = tmp_path / 'junk.zip'
    junk.write_text('not an archive')
    with pytest.raises(DownloadError, match='neither a zip nor a tar'):
        extract(junk, tmp_path / 'out')
