"""The output directory of an analysis (docs/analyze.md): the Parquet
tables ``files/``, ``windows/`` and ``events/``, ``summary.csv``,
``run.json`` and the journal that makes a run resumable.

A part (the rows of a few files) is committed in three steps: its three
tables are written to ``.analyze/staging/`` (each atomically); one line
naming it and its files is appended to ``.analyze/journal.jsonl``; the
tables are renamed into place. The journal line is the commit: at the
next start, a staged part the journal names is moved into place, one it
does not name is deleted, so a kill at any moment loses only the files in
flight and never leaves a duplicate or half-written row. Readers see the
tables only (``.analyze/`` is hidden, which pyarrow, DuckDB, Polars and
Spark skip)."""
import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import UserError

PART = 'part-{:06d}'
TABLES = ('files', 'windows', 'events')


def schemas(scores_all=False, embeddings=False):
    """``{table: pyarrow schema}`` of the layout."""
    import pyarrow as pa
    windows = [('path', pa.string()), ('start', pa.float64()),
               ('end', pa.float64()), ('top_labels', pa.list_(pa.string())),
               ('top_scores', pa.list_(pa.float32()))]
    if scores_all:
        windows.append(('scores', pa.list_(pa.float32())))
    if embeddings:
        windows.append(('embedding', pa.list_(pa.float16())))
    return {
        'files': pa.schema([
            ('path', pa.string()), ('size', pa.int64()),
            ('mtime', pa.float64()), ('duration', pa.float64()),
            ('sample_rate', pa.int32()), ('channels', pa.int32()),
            ('status', pa.string()), ('error', pa.string()),
            ('windows', pa.int32()), ('seconds', pa.float64())]),
        'windows': pa.schema(windows),
        'events': pa.schema([
            ('path', pa.string()), ('onset', pa.float64()),
            ('offset', pa.float64()), ('label', pa.string()),
            ('score', pa.float32())])}


def _lists(values, width, kind):
    """``[rows, width]`` -> a pyarrow list column."""
    import pyarrow as pa
    offsets = pa.array(np.arange(0, values.size + 1, max(width, 1),
                                 dtype=np.int32)[:len(values) + 1])
    return pa.ListArray.from_arrays(offsets, pa.array(values.ravel(), kind))


def part_tables(results, labels, schema):
    """The three tables of ``results`` (:class:`.analyzer.Result`)."""
    import pyarrow as pa
    files = pa.Table.from_pylist([r.file for r in results],
                                 schema=schema['files'])
    n = [len(r.start) for r in results]
    paths = np.repeat(np.array([r.file['path'] for r in results],
                               dtype=object), n)
    k = results[0].top_index.shape[1] if results else 0

    def stack(name, width, dtype):
        parts = [getattr(r, name) for r in results if len(r.start)]
        return (np.concatenate(parts) if parts else
                np.zeros((0, width), dtype))

    top = stack('top_index', k, np.int32)
    names = np.array(labels, dtype=object)
    columns = {
        'path': pa.array(paths, pa.string()),
        'start': pa.array(np.concatenate([r.start for r in results]
                                         or [np.zeros(0)]), pa.float64()),
        'end': pa.array(np.concatenate([r.end for r in results]
                                       or [np.zeros(0)]), pa.float64()),
        'top_labels': _lists(names[top], k, pa.string()),
        'top_scores': _lists(stack('top_scores', k, np.float32), k,
                             pa.float32())}
    if 'scores' in schema['windows'].names:
        columns['scores'] = _lists(stack('scores', len(labels), np.float32),
                                   len(labels), pa.float32())
    if 'embedding' in schema['windows'].names:
        width = next((r.embedding.shape[1] for r in results
                      if r.embedding is not None and len(r.start)), 0)
        columns['embedding'] = _lists(stack('embedding', width, np.float16),
                                      width, pa.float16())
    windows = pa.Table.from_pydict(columns, schema=schema['windows'])
    events = [{'path': r.file['path'], 'onset': e[0], 'offset': e[1],
               'label': e[2], 'score': e[3]} for r in results
              for e in r.events]
    return {'files': files, 'windows': windows,
            'events': pa.Table.from_pylist(events, schema=schema['events'])}


class Store:
    """The output directory: ``done`` is ``{path: (size, mtime_ns,
    status, part)}`` of every committed file (after :meth:`open`)."""

    def __init__(self, out_dir):
        self.dir = Path(out_dir)
        self.work = self.dir / '.analyze'
        self.staging = self.work / 'staging'
        self.journal = self.work / 'journal.jsonl'
        self.run_json = self.dir / 'run.json'
        self.done, self.next_part = {}, 0

    # ------------------------------------------------------------ settings
    def previous(self):
        """The ``run.json`` of an earlier run into this directory, or None."""
        if not self.run_json.is_file():
            return None
        try:
            return json.loads(self.run_json.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f'{self.run_json}: cannot read ({e}); give '
                            f'another --output_dir') from None

    def check_same(self, section, now):
        """Refuse in one line to mix results of other settings: ``now``
        against the ``section`` of the previous ``run.json``."""
        before = (self.previous() or {}).get(section)
        if before is None:
            return
        now = json.loads(json.dumps(now))
        diff = [k for k in sorted(set(before) | set(now))
                if before.get(k) != now.get(k)]
        if diff:
            what = '; '.join(f'{k} {before.get(k)!r} then, {now.get(k)!r} '
                             f'now' for k in diff[:3])
            raise UserError(
                f'{self.dir} holds results of other settings ({section}: '
                f'{what}); mixing them would make one table of two '
                f'analyses: give another --output_dir, or the same flags to '
                f'resume')

    def write_run_json(self, record):
        atomic.write_text(self.run_json, json.dumps(record, indent=1) + '\n')

    # ------------------------------------------------------------- journal
    def open(self):
        """Finish what a killed run committed, drop what it did not, and
        read the journal."""
        for t in TABLES:
            (self.dir / t).mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(parents=True, exist_ok=True)
        records = self._read_journal()
        committed = set()
        for rec in records:
            if 'part' in rec:
                committed.add(rec['part'])
                self.next_part = max(self.next_part, rec['part'] + 1)
                for path, size, mtime_ns, status in rec['files']:
                    self.done[path] = (size, mtime_ns, status, rec['part'])
            for path in rec.get('drop', ()):
                self.done.pop(path, None)
        for f in sorted(self.staging.iterdir()):
            name, _, table = f.name.partition('.')
            table = table.rpartition('.')[0]
            if name.startswith('part-') and int(name[5:]) in committed \
                    and table in TABLES:
                os.replace(f, self.dir / table / f'{name}.parquet')
            else:
                f.unlink()
        return self

    def _read_journal(self):
        """The journal's records; a last line a kill cut short is cut off
        (it committed nothing)."""
        if not self.journal.is_file():
            return []
        data = self.journal.read_bytes()
        whole = data[:data.rfind(b'\n') + 1]
        if len(whole) != len(data):
            with open(self.journal, 'r+b') as f:
                f.truncate(len(whole))
        return [json.loads(line) for line in whole.decode().splitlines()]

    def _append(self, record):
        with open(self.journal, 'a', encoding='utf-8') as f:
            f.write(json.dumps(record) + '\n')
            f.flush()
            os.fsync(f.fileno())

    def commit(self, results, labels, schema):
        """Write the rows of ``results`` as the next part (module doc)."""
        import pyarrow.parquet as pq
        if not results:
            return
        part = PART.format(self.next_part)
        tables = part_tables(results, labels, schema)
        staged = {t: self.staging / f'{part}.{t}.parquet' for t in TABLES}
        for t, table in tables.items():
            atomic.write_file(staged[t],
                              lambda p, table=table: pq.write_table(table, p))
        files = [[r.file['path'], r.file['size'], r.mtime_ns,
                  r.file['status']] for r in results]
        self._append({'part': self.next_part, 'files': files})
        for t in TABLES:
            os.replace(staged[t], self.dir / t / f'{part}.parquet')
        for path, size, mtime_ns, status in files:
            self.done[path] = (size, mtime_ns, status, self.next_part)
        self.next_part += 1

    def drop(self, paths):
        """Remove the rows of ``paths`` (changed since analysed) from their
        parts: each part rewritten without them, then the journal told.
        Filtering again is harmless, so a kill midway is finished by the
        next run."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
        paths = [p for p in paths if p in self.done]
        if not paths:
            return
        gone = set(paths)
        parts = sorted({self.done[p][3] for p in paths})
        for number in parts:
            part = PART.format(number)
            for t in TABLES:
                final = self.dir / t / f'{part}.parquet'
                table = pq.read_table(final)
                keep = table.filter(pc.invert(pc.is_in(
                    table['path'], value_set=_string_array(gone))))
                if keep.num_rows == table.num_rows:
                    continue
                staged = self.staging / f'rewrite.{t}.parquet'
                atomic.write_file(staged,
                                  lambda p, keep=keep: pq.write_table(keep, p))
                os.replace(staged, final)
        self._append({'drop': paths})
        for p in paths:
            del self.done[p]

    # -------------------------------------------------------------- summary
    def summary(self, labels):
        """``summary.csv``: per label, the files with an event of it, its
        events and their total seconds; returns the rows."""
        import pyarrow.dataset as ds
        events = ds.dataset(self.dir / 'events', format='parquet').to_table(
            columns=['path', 'onset', 'offset', 'label'])
        per = {label: [set(), 0, 0.0] for label in labels}
        for path, on, off, label in zip(*(events[c].to_pylist() for c in
                                          ('path', 'onset', 'offset',
                                           'label'))):
            entry = per.setdefault(label, [set(), 0, 0.0])
            entry[0].add(path)
            entry[1] += 1
            entry[2] += off - on
        rows = [(label, len(f), n, round(s, 6))
                for label, (f, n, s) in per.items()]
        out = io.StringIO()
        w = csv.writer(out, lineterminator='\n')
        w.writerow(('label', 'files', 'events', 'seconds'))
        w.writerows(rows)
        atomic.write_text(self.dir / 'summary.csv', out.getvalue())
        return rows


def _string_array(values):
    import pyarrow as pa
    return pa.array(sorted(values), pa.string())
