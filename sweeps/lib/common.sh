# Sourced by every sweep script: strict mode, repository root, SCALE, and the sweep runner.
#   SCALE=smoke (default; CPU minutes, embedded data) | full (the report's settings)
#   JOBS=N worker processes (default: number of cores) · SWEEPS_OUT=DIR (default runs/sweeps)
#   PYTHON=... (default: python on PATH; `make` puts .venv/bin first)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
SCALE=${SCALE:-smoke}
case "$SCALE" in
  smoke|full) ;;
  *) echo "error: SCALE must be smoke or full, got '$SCALE'" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 1)}
SWEEPS_OUT=${SWEEPS_OUT:-runs/sweeps}

# sweep NAME LAB [sweep flags...] -- [flags for every point]
sweep() {
  local name=$1 lab=$2
  shift 2
  "$PYTHON" -m common.sweep "$lab" --out "$SWEEPS_OUT/$SCALE/$name" --jobs "$JOBS" "$@"
}
