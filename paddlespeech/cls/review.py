"""The review page: a static HTML file, opened from disk without a server,
with one row per candidate (a search hit or a detected event): its audio
snippet, its spectrogram thumbnail, its score and the answers *yes* /
*no* / *other label*. *Export* downloads the answers as a manifest
(``path,label,start,end``) that the own-data manifest layout reads
(docs/data.md): *yes* gives the page's label, *no* the negative label
(``background`` unless changed on the page: a class of its own), *other*
the label typed in the row; unanswered rows are left out.

Keys: j / k (or arrow down / up) move between rows, y / n / o answer the
current row, space plays it, e exports.
"""
import csv
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import atomic
from .audio import AudioError, _open, read_segment, to_mono

SNIPPETS = 'snippets'
NEGATIVE_LABEL = 'background'


@dataclass
class Candidate:
    path: str
    start: float
    end: float
    score: float
    label: str = ''


def cut_snippet(path, start, end, wav_path, png_path):
    """``path``'s ``start``-``end`` as a wav (its own rate, mono) and a log
    spectrogram thumbnail (png)."""
    import soundfile as sf
    from matplotlib.image import imsave
    with _open(path) as f:
        sr = f.samplerate
        wav = to_mono(read_segment(f, path, start, end)).reshape(-1)
    atomic.write_file(wav_path, lambda p: sf.write(p, wav, sr, format='WAV',
                                                   subtype='PCM_16'))
    n_fft = 512
    frames = max(1, 1 + (len(wav) - n_fft) // (n_fft // 4))
    x = np.pad(wav, (0, max(0, n_fft - len(wav))))
    idx = np.arange(n_fft)[None] + (n_fft // 4) * np.arange(frames)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * np.hanning(n_fft), axis=1)).T
    db = 20 * np.log10(spec + 1e-6)
    atomic.write_file(png_path, lambda p: imsave(
        p, np.clip(db, db.max() - 80, None), cmap='magma', origin='lower',
        format='png'))


def write_review(out_dir, candidates, title, label='', score_name='score',
                 page='hits.html'):
    """``out_dir/page`` and its snippets in ``out_dir/snippets/``; a
    candidate whose audio cannot be read keeps its row without a player.
    Returns the page's path."""
    out = Path(out_dir)
    rows = []
    for i, c in enumerate(candidates, 1):
        stem = f'{SNIPPETS}/{i:05d}'
        try:
            cut_snippet(c.path, c.start, c.end, out / f'{stem}.wav',
                        out / f'{stem}.png')
            media = stem
        except AudioError:
            media = None
        rows.append({'path': str(c.path), 'start': round(float(c.start), 3),
                     'end': round(float(c.end), 3),
                     'score': round(float(c.score), 4), 'media': media,
                     'label': c.label})
    text = PAGE.format(title=html.escape(title), label=html.escape(label),
                       negative=NEGATIVE_LABEL,
                       score_name=html.escape(score_name),
                       rows=json.dumps(rows).replace('</', '<\\/'))
    atomic.write_text(out / page, text)
    return out / page


def manifest_rows(text):
    """The rows of an exported manifest (tests, tools)."""
    return list(csv.DictReader(io.StringIO(text)))


PAGE = r'''<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: 4px 8px; border-bottom: 1px solid #ddd; text-align: left; }}
tr.current {{ outline: 2px solid #36c; }}
tr.yes {{ background: #e6f6e6; }} tr.no {{ background: #fbe9e9; }}
tr.other {{ background: #fff6d6; }}
img {{ height: 64px; }} .path {{ font-size: 80%; color: #555; }}
</style></head>
<body>
<h1>{title}</h1>
<p>Label for <b>yes</b>: <input id="label" value="{label}">
 &nbsp; label for <b>no</b>: <input id="negative" value="{negative}">
 &nbsp; <button id="export">Export</button> <span id="count"></span></p>
<p>Keys: j/k or arrows move, y yes, n no, o other label, space plays, e
exports. Export downloads review.csv (path,label,start,end) of the answered
rows: a manifest the training layouts read.</p>
<table id="rows"><thead><tr><th>#</th><th>{score_name}</th><th>where</th>
<th>audio</th><th>spectrogram</th><th>answer</th></tr></thead><tbody></tbody>
</table>
<script>
const ROWS = {rows};
const answers = {{}};
let current = 0;
const body = document.querySelector('#rows tbody');
function esc(s) {{ const d = document.createElement('div'); d.textContent = s; return d.innerHTML; }}
ROWS.forEach((r, i) => {{
  const tr = document.createElement('tr');
  tr.id = 'row' + i;
  const media = r.media ?
    `<audio controls preload="none" src="${{r.media}}.wav"></audio>` : 'unreadable';
  const img = r.media ? `<img src="${{r.media}}.png" alt="spectrogram">` : '';
  tr.innerHTML = `<td>${{i + 1}}</td><td>${{r.score}}</td>` +
    `<td><span class="path">${{esc(r.path)}}</span><br>${{r.start}}-${{r.end}} s` +
    (r.label ? ` (${{esc(r.label)}})` : '') + `</td><td>${{media}}</td><td>${{img}}</td>` +
    `<td><button class="yes">yes</button> <button class="no">no</button> ` +
    `<button class="other">other</button> <input class="otherlabel" size="12" placeholder="label"></td>`;
  tr.querySelector('.yes').onclick = () => answer(i, 'yes');
  tr.querySelector('.no').onclick = () => answer(i, 'no');
  tr.querySelector('.other').onclick = () => answer(i, 'other');
  tr.querySelector('.otherlabel').onchange = () => answer(i, 'other');
  tr.onclick = () => select(i);
  body.appendChild(tr);
}});
function select(i) {{
  if (i < 0 || i >= ROWS.length) return;
  document.querySelectorAll('tr.current').forEach(t => t.classList.remove('current'));
  current = i;
  const tr = document.getElementById('row' + i);
  tr.classList.add('current');
  tr.scrollIntoView({{block: 'nearest'}});
}}
function answer(i, kind) {{
  const tr = document.getElementById('row' + i);
  if (kind === 'other' && !tr.querySelector('.otherlabel').value.trim()) {{
    tr.querySelector('.otherlabel').focus();
  }}
  answers[i] = kind;
  tr.classList.remove('yes', 'no', 'other');
  tr.classList.add(kind);
  select(i);
  document.getElementById('count').textContent =
    Object.keys(answers).length + ' of ' + ROWS.length + ' answered';
}}
function labelOf(i) {{
  const kind = answers[i];
  if (kind === 'yes') return document.getElementById('label').value.trim();
  if (kind === 'no') return document.getElementById('negative').value.trim();
  return document.getElementById('row' + i).querySelector('.otherlabel').value.trim();
}}
function csvField(s) {{
  s = String(s);
  return /[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}}
function exportCsv() {{
  const lines = ['path,label,start,end'];
  Object.keys(answers).map(Number).sort((a, b) => a - b).forEach(i => {{
    const label = labelOf(i);
    if (!label) return;
    const r = ROWS[i];
    lines.push([r.path, label, r.start, r.end].map(csvField).join(','));
  }});
  const blob = new Blob([lines.join('\n') + '\n'], {{type: 'text/csv'}});
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = 'review.csv';
  document.body.appendChild(a);
  a.click();
  a.remove();
}}
document.getElementById('export').onclick = exportCsv;
document.addEventListener('keydown', e => {{
  if (e.target.tagName === 'INPUT') {{
    if (e.key === 'Enter' || e.key === 'Escape') e.target.blur();
    return;
  }}
  const k = e.key;
  if (k === 'j' || k === 'ArrowDown') select(current + 1);
  else if (k === 'k' || k === 'ArrowUp') select(current - 1);
  else if (k === 'y') answer(current, 'yes');
  else if (k === 'n') answer(current, 'no');
  else if (k === 'o') answer(current, 'other');
  else if (k === 'e') exportCsv();
  else if (k === ' ') {{
    const au = document.getElementById('row' + current).querySelector('audio');
    if (au) au.paused ? au.play() : au.pause();
  }} else return;
  e.preventDefault();
}});
if (ROWS.length) select(0);
</script></body></html>
'''
