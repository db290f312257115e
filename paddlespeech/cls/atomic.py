"""Atomic writes: a file or directory is written under a hidden temporary
name and renamed into place once complete, so a crash or Ctrl-C leaves the
previous version or the new one, never a half-written mix.

Every file the project writes that a later run reads back (checkpoints,
``metrics.jsonl``, ``model.json``, cross-validation results) goes through
here.
"""
import os
import shutil
from pathlib import Path


def _tmp(path):
    return path.with_name(f'.{path.name}.tmp')


def write_text(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    tmp.write_text(text, encoding='utf-8')
    os.replace(tmp, path)


def write_file(path, write):
    """Call ``write(tmp_path)`` (e.g. ``np.savez``, ``fig.savefig``) on a
    hidden name, then rename it to ``path``. The temporary name keeps the
    suffix, which some writers go by."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.tmp.{path.name}')
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save(obj, path):
    """``paddle.save(obj, path)``, atomically."""
    import paddle
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    paddle.save(obj, str(tmp))
    os.replace(tmp, path)


def write_dir(path, write):
    """Call ``write(folder)`` on a hidden directory renamed to ``path`` once
    complete (replacing an older ``path``); returns ``path``. The files and
    entries are flushed before each rename, so a rename is never ahead of
    the data it points at after a power loss."""
    out = Path(path)
    tmp, old = _tmp(out), _old(out)
    recover_dir(out)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        _fsync_dir(tmp)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        _fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return out


def _old(path):
    return path.with_name(f'.{path.name}.old')


def recover_dir(path):
    """Finish or undo a :func:`write_dir` of ``path`` that was killed.

    ``.<name>.old`` without ``<name>`` means the kill came between the
    two renames: the new version (``.<name>.tmp``) was complete before the
    first one, so it takes the place, else the old version goes back.
    Then leftovers go: a ``.tmp`` (a write killed midway) and an ``.old``
    (a kill after both renames). Returns whether ``path`` exists."""
    out = Path(path)
    tmp, old = _tmp(out), _old(out)
    if old.is_dir() and not out.exists():
        os.replace(tmp if tmp.is_dir() else old, out)
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    return out.exists()


def recover_dirs(folder):
    """:func:`recover_dir` of every directory write in ``folder`` that a
    kill left behind (each ``.<name>.old`` or ``.<name>.tmp`` there)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    names = {d.name[1:-len(suffix)] for d in folder.iterdir()
             for suffix in ('.old', '.tmp')
             if d.is_dir() and d.name.startswith('.') and
             d.name.endswith(suffix)}
    for name in sorted(names):
        recover_dir(folder / name)


def _fsync_dir(folder):
    folder = Path(folder)
    for p in [*folder.iterdir(), folder]:
        if p.is_file() or p == folder:
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
