#!/usr/bin/env bash
# Set up the recipe's environment (as run.sh does), the test-only packages
# and the browser of the service's browser test (tests/install_browser.sh:
# as root, else it says the command), then run the test suite. Extra
# arguments go to pytest, e.g.
#   tests/run.sh -m "not slow"     the fast tier (edit-test loop)
#   PYTEST_WORKERS=1 tests/run.sh   one process (default: one per core, at most 4)
set -euo pipefail
cd "$(dirname "$0")/.."
source path.sh
# torch 2.13.0 CPU is the wheel on local disk; panns-inference and
# torchlibrosa without dependencies so that pip never pulls another torch.
# pip runs only when this file, tests/requirements.txt,
# requirements-onnx.txt or requirements-ray.txt changed.
stamp="${VIRTUAL_ENV}/.test-requirements.sha256"
want="$(cat tests/requirements.txt requirements-onnx.txt requirements-ray.txt tests/run.sh | sha256sum | cut -d' ' -f1)"
if [[ ! -f "${stamp}" || "$(cat "${stamp}")" != "${want}" ]]; then
  python -m pip install --quiet -r tests/requirements.txt -r requirements-onnx.txt \
    -r requirements-ray.txt
  python -m pip install --quiet --no-deps panns-inference==0.1.1 torchlibrosa==0.1.0
  echo "${want}" > "${stamp}"
fi
tests/install_browser.sh || true
# Test files run in parallel (pytest-xdist), each file in one worker so its
# module fixtures are built once; most tests run single-threaded
# subprocesses, so a second core halves the wall time.
cores="$(nproc)"
workers="${PYTEST_WORKERS:-$(( cores < 4 ? cores : 4 ))}"
python -m pytest -n "${workers}" --dist loadfile tests "$@"
