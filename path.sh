# Environment of the recipe; sourced by run.sh, the local/*.sh stage scripts
# and tests/run.sh. Creates the virtual environment on first use.
MAIN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export MAIN_ROOT
VENV="${VENV:-${MAIN_ROOT}/.venv}"
"${MAIN_ROOT}/local/setup_env.sh" "${VENV}"
# shellcheck disable=SC1091
source "${VENV}/bin/activate"
export PYTHONPATH="${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
export PYTHONIOENCODING=UTF-8
