"""The model artifact (artifact.py): model.json as a typed, versioned
schema, readable without Paddle; and the library's import graph has no
circle."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from paddlespeech.cls.artifact import (SCHEMA_VERSION, ExportMeta, read_meta,
                                       write_meta)
from paddlespeech.cls.errors import UserError
from paddlespeech.cls.features import FeatureConfig
from tests.conftest import ROOT, script_env

LIBRARY = ROOT / 'paddlespeech' / 'cls'


def test_importing_the_artifact_loads_no_paddle(tmp_path):
    code = ('import sys, json\n'
            'import paddlespeech.cls.artifact as a\n'
            'print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0]'
            ' in ("paddle", "paddleaudio", "onnxruntime", "torch"))))\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, env=script_env(), cwd=tmp_path,
                         timeout=120, check=True).stdout
    assert json.loads(out) == []


def test_model_json_round_trip_and_older_files(tmp_path):
    meta = ExportMeta(label_list=['a', 'b'], feature=FeatureConfig(n_mels=32),
                      backbone='cnn6', clip_seconds=1.0, multi_label=True)
    write_meta(tmp_path, meta)
    d = json.loads((tmp_path / 'model.json').read_text())
    assert d['version'] == SCHEMA_VERSION and d['multi_label'] is True
    assert d['feature']['n_mels'] == 32 and 'logits' not in d
    assert read_meta(tmp_path) == meta
    # a file written before the schema had a version, and a newer key
    (tmp_path / 'model.json').write_text(json.dumps({
        'input': 'waveform', 'label_list': ['x'], 'feature': {},
        'checkpoint': 'c', 'backend': 'paddle', 'precision': 'int8',
        'calibration': {'clips': 8}, 'embedding_dim': 512}))
    old = read_meta(tmp_path)
    assert (old.version, old.takes_waveform, old.precision, old.multi_label,
            old.clip_seconds) == (1, True, 'int8', False, None)
    assert old.extra == {'embedding_dim': 512}
    assert old.to_dict()['embedding_dim'] == 512
    assert read_meta(tmp_path / 'missing') is None


@pytest.mark.parametrize('bad', [{'input': 'spectrogram'},
                                 {'precision': 'int4'},
                                 {'feature': {'n_mels': 'many'}},
                                 {'label_list': None, 'input': 'x'}])
def test_malformed_model_json_is_one_line(tmp_path, bad):
    (tmp_path / 'model.json').write_text(json.dumps(
        {'label_list': ['a'], **bad}))
    with pytest.raises(UserError) as e:
        read_meta(tmp_path)
    text = str(e.value)
    assert '\n' not in text and text.startswith(str(tmp_path / 'model.json'))
    assert text.endswith('export the checkpoint again')


def _top_level_imports(path, anywhere=False):
    """Modules of the package that ``path`` imports at module level
    (``anywhere``: in functions too)."""
    tree = ast.parse(path.read_text())
    package = path.relative_to(ROOT).with_suffix('').parts
    if package[-1] == '__init__':
        package = package[:-1]
    found = set()
    for node in ast.walk(tree) if anywhere else tree.body:
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[:len(package) - node.level + (
                path.name == '__init__.py')]
            mod = '.'.join(base + tuple(filter(None, [node.module])))
        elif anywhere and (node.module or '').startswith('paddlespeech.'):
            mod = node.module
        else:
            continue
        found.add(mod)
        for alias in node.names:
            found.add(f'{mod}.{alias.name}')
    return found


def _import_graph(anywhere=False):
    """``(modules, graph)``: the library's modules (scripts aside) and the
    modules of the package each imports at module level (``anywhere``: in
    functions too)."""
    modules = {'.'.join(p.relative_to(ROOT).with_suffix('').parts).removesuffix(
        '.__init__'): p for p in LIBRARY.rglob('*.py')
        if 'exps' not in p.parts}
    return modules, {m: {d for d in _top_level_imports(p, anywhere)
                         if d in modules and d != m}
                     for m, p in modules.items()}


def test_the_library_has_no_import_circle():
    modules, graph = _import_graph()
    # a package's __init__ re-exporting its modules is not a circle
    graph = {m: {d for d in deps if not (m.startswith(d + '.'))}
             for m, deps in graph.items()}
    state, path = {}, []

    def visit(m):
        state[m] = 'open'
        path.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 'open':
                raise AssertionError(' -> '.join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d)
        path.pop()
        state[m] = 'done'

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert graph['paddlespeech.cls.inference'] >= {
        'paddlespeech.cls.artifact'}
    assert 'paddlespeech.cls.export' not in graph['paddlespeech.cls.inference']
    assert Path(modules['paddlespeech.cls.artifact']).is_file()


def test_the_configuration_loads_no_module_that_imports_it_back():
    """config.py imports the sections' owners on first use; none of them
    (nor what they import, even inside a function, nor their packages) may
    import config.py, or loading a configuration would be an import circle
    at run time."""
    from paddlespeech.cls.config import SECTIONS
    _, graph = _import_graph(anywhere=True)
    config = 'paddlespeech.cls.config'
    for module, _ in SECTIONS.values():
        start = 'paddlespeech.cls' + module
        parts = start.split('.')
        todo = ['.'.join(parts[:i]) for i in range(3, len(parts) + 1)]
        seen, via = set(todo), {m: [m] for m in todo}
        while todo:
            m = todo.pop()
            assert m != config, ' -> '.join(via[m])
            for d in graph.get(m, ()):
                if d not in seen:
                    seen.add(d)
                    via[d] = via[m] + [d]
                    todo.append(d)
