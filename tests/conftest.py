"""Shared fixture: reference PyTorch PANNs and their converted weights."""
import paddlespeech.cls  # noqa: F401  (must precede paddle: MKL setup)

from types import SimpleNamespace

import pytest

import panns_reference
from paddlespeech.cls.models.panns.convert import convert


@pytest.fixture(scope='session')
def reference(tmp_path_factory):
    """``arch -> namespace(model, pth, pdparams)``, each built only once.

    ``model`` is the reference PyTorch model (random weights, BatchNorm
    statistics calibrated on ``panns_reference.test_waveforms()``), ``pth``
    its checkpoint in the released format, ``pdparams`` that checkpoint
    converted with :func:`convert`.
    """
    built = {}

    def get(arch):
        if arch not in built:
            folder = tmp_path_factory.mktemp(f'reference_{arch}')
            model = panns_reference.calibrate_batchnorm(
                panns_reference.make_reference(arch),
                panns_reference.test_waveforms())
            pth = panns_reference.save_reference_checkpoint(
                model, folder / f'{arch}.pth')
            pdparams = folder / f'panns_{arch}.pdparams'
            convert(arch, pth, pdparams)
            built[arch] = SimpleNamespace(model=model, pth=pth,
                                          pdparams=pdparams)
        return built[arch]

    return get
