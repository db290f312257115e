#!/usr/bin/env bash
# Create (or update) the virtual environment given as $1 from requirements.txt
# and requirements-serve.txt (the HTTP service). Re-runs pip only when they
# changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-${root}/.venv}"
reqs=("${root}/requirements.txt" "${root}/requirements-serve.txt")
stamp="${venv}/.requirements.sha256"
want="$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)"
if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${want}" ]]; then
  exit 0
fi
python="${PYTHON:-python3}"
if ! "${python}" -c 'import sys; assert sys.version_info >= (3, 9)' 2>/dev/null; then
  echo "error: ${python} is missing or older than Python 3.9; set PYTHON=/path/to/python3" >&2
  exit 1
fi
echo "setting up ${venv} from ${reqs[*]##*/} (first run only)" >&2
[[ -x "${venv}/bin/python" ]] || "${python}" -m venv "${venv}"
"${venv}/bin/python" -m pip install --quiet --upgrade pip >&2
"${venv}/bin/python" -m pip install --quiet -r "${reqs[0]}" -r "${reqs[1]}" >&2
echo "${want}" > "${stamp}"
