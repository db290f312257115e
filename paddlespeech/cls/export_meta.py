"""Layout of an export directory, shared by export_model.py and deploy.

``inference.json`` (Paddle 3 PIR; ``inference.pdmodel`` from older Paddle)
+ ``inference.pdiparams`` hold the graph; ``model.json`` holds what the
deployed model needs to be used correctly: graph input kind (``logmel`` or
``waveform``), label list and feature configuration.
"""
import json
import os
from pathlib import Path

from .errors import UserError

GRAPH_PREFIX = 'inference'
META_FILE = 'model.json'


def write_export_meta(output_dir, meta):
    path = Path(output_dir) / META_FILE
    tmp = path.with_name(f'.{path.name}.tmp')
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, path)


def read_export(model_dir):
    """``(graph_path, params_path, meta)``; a clear error if a file is missing."""
    model_dir = Path(model_dir)
    params = model_dir / f'{GRAPH_PREFIX}.pdiparams'
    graphs = [model_dir / f'{GRAPH_PREFIX}{s}' for s in ('.json', '.pdmodel')]
    graph = next((g for g in graphs if g.is_file()), graphs[0])
    missing = [str(p) for p in (graph, params, model_dir / META_FILE)
               if not p.is_file()]
    if missing:
        raise UserError(f'export directory {model_dir} is incomplete: missing '
                        f'{", ".join(missing)} (run export_model.py '
                        f'--output_dir {model_dir})')
    meta = json.loads((model_dir / META_FILE).read_text())
    return graph, params, meta
