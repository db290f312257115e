"""ONNX: converting an exported Paddle graph with paddle2onnx, and the
optional packages (``requirements-onnx.txt``) that ONNX export and the
ONNX Runtime backend need; the default Paddle path imports none of them."""
import importlib
from pathlib import Path

from .errors import UserError
from .runtime import stdout_silenced

EXTRA = 'pip install -r requirements-onnx.txt'
OPSET = 13


def require(module):
    """``import module``, or one line naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UserError(f'{module} is not installed: ONNX export and the '
                        f'onnxruntime backend need the optional extra '
                        f'({EXTRA})') from e


def to_onnx(graph, params, out):
    """Convert the Paddle graph ``graph`` + ``params`` to the ONNX model
    ``out``. paddle2onnx's own constant folding (polygraphy) is skipped: it
    pip-installs a package at run time, and ONNX Runtime folds constants
    when it loads the model anyway."""
    p2o = require('paddle2onnx')
    out = Path(out)
    with stdout_silenced():
        p2o.export(str(graph), str(params), str(out), opset_version=OPSET,
                   optimize_tool='none')
    if not out.is_file():  # paddle2onnx logs its error and returns
        raise UserError(f'paddle2onnx could not convert {graph} (its log '
                        f'above says why)')
    return out
