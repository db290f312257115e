#!/usr/bin/env bash
# Set up the recipe's environment (as run.sh does) plus the test-only
# packages, then run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source path.sh
# torch 2.13.0 CPU is the wheel on local disk; panns-inference and
# torchlibrosa without dependencies so that pip never pulls another torch.
python -m pip install --quiet -r tests/requirements.txt
python -m pip install --quiet --no-deps panns-inference==0.1.1 torchlibrosa==0.1.0
python -m pytest tests "$@"
