"""The files an analysis reads: folders (recursive), glob patterns and
list files, as absolute paths, each keyed by size and modification time
(what the journal compares to tell a finished file from a changed one)."""
import csv
import glob
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..audio import AUDIO_SUFFIXES, find_audio
from ..errors import UserError

# An --input ending in one of these is a list of files, not audio.
LIST_SUFFIXES = ('.txt', '.lst', '.list', '.csv', '.tsv')
# Columns of a CSV/TSV list that name the file (a dataset manifest's).
PATH_COLUMNS = ('path', 'file_name', 'filename')


@dataclass
class Inputs:
    """``paths``: unique absolute paths in the order given; ``left_out``:
    ``{reason: count}`` of what folders and patterns held besides audio
    (``hidden`` files and folders, ``not audio`` by name...)."""
    paths: list
    left_out: Counter = field(default_factory=Counter)


def gather_inputs(items):
    """:class:`Inputs` of ``--input``: a folder gives its audio files
    (:func:`..audio.find_audio`: recursive, hidden ones skipped and
    counted), a pattern with ``*``, ``?`` or ``[`` its matches (``**``
    crosses folders), a ``.txt``/``.lst``/``.list`` file one path per line
    and a ``.csv``/``.tsv`` file its ``path`` (or ``file_name``) column,
    relative to the list's folder; anything else is taken as a file, so
    that a missing or unreadable one is reported, not dropped."""
    paths, left_out = [], Counter()

    def folder(p):
        found, skipped = find_audio(p)
        for reason, names in skipped.items():
            left_out[reason] += len(names)
        paths.extend(p / f for f in found)

    for item in map(str, items):
        p = Path(item)
        if p.is_dir() and p.suffix.lower() not in AUDIO_SUFFIXES:
            folder(p)
        elif p.suffix.lower() in LIST_SUFFIXES and p.is_file():
            paths.extend(read_list(p))
        elif not os.path.lexists(p) and glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise UserError(f'--input {item}: the pattern matches no '
                                f'file')
            for m in map(Path, matches):
                if m.is_dir():
                    folder(m)
                elif m.suffix.lower() in AUDIO_SUFFIXES:
                    paths.append(m)
                else:
                    left_out['not audio'] += 1
        else:
            paths.append(p)
    unique = list(dict.fromkeys(os.path.abspath(p) for p in paths))
    if not unique:
        raise UserError(f'--input {" ".join(map(str, items))}: no audio '
                        f'files ({", ".join(sorted(AUDIO_SUFFIXES))})')
    return Inputs(unique, left_out)


def read_list(path):
    """The files a list file names, relative to its folder."""
    root = path.parent
    try:
        text = path.read_text(encoding='utf-8-sig')
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f'{path}: cannot read the list of files ({e})') \
            from None
    if path.suffix.lower() in ('.csv', '.tsv'):
        rows = csv.DictReader(text.splitlines(),
                              delimiter='\t' if path.suffix.lower() == '.tsv'
                              else ',')
        column = next((c for c in PATH_COLUMNS if c in
                       (rows.fieldnames or [])), None)
        if column is None:
            raise UserError(f'{path}: a CSV/TSV list needs a header with a '
                            f'{" or ".join(PATH_COLUMNS)} column; found '
                            f'{rows.fieldnames}')
        names = [(r.get(column) or '').strip() for r in rows]
    else:
        names = [line.strip() for line in text.splitlines()]
    return [root / n for n in names if n and not n.startswith('#')]


def file_key(path):
    """``(size, mtime_ns)`` of ``path``, ``(None, None)`` when it cannot
    be read: the journal redoes a file whose key changed."""
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    return st.st_size, st.st_mtime_ns
