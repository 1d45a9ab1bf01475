# Sourced by every sweep script: strict mode, repository root, SCALE, BACKEND, and the sweep runner.
#   SCALE=smoke (default; CPU minutes, embedded data) | full (the report's settings)
#   BACKEND=local (default: this machine, JOBS=N worker processes, default the number of cores)
#         | ray (every point a Ray task; RAY_ADDRESS=auto or HEAD:6379 joins a running cluster, unset starts
#           a local Ray; CPUS_PER_POINT / GPUS_PER_POINT set each point's share, see sweeps/README.md)
#   SWEEPS_OUT=DIR (default runs/sweeps) · PYTHON=... (default: python on PATH; `make` puts .venv/bin first)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
SCALE=${SCALE:-smoke}
case "$SCALE" in
  smoke|full) ;;
  *) echo "error: SCALE must be smoke or full, got '$SCALE'" >&2; exit 2 ;;
esac
BACKEND=${BACKEND:-local}
case "$BACKEND" in
  local|ray) ;;
  *) echo "error: BACKEND must be local or ray, got '$BACKEND'" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 1)}
SWEEPS_OUT=${SWEEPS_OUT:-runs/sweeps}

# The sweep runner's flags for BACKEND, JOBS, RAY_ADDRESS, CPUS_PER_POINT and GPUS_PER_POINT.
backend=(--jobs "$JOBS")
if [ "$BACKEND" = ray ]; then
  backend=(--backend ray ${RAY_ADDRESS:+--address "$RAY_ADDRESS"})
fi
# passed on with BACKEND=local too: the runner refuses them in one line rather than ignore them
backend+=(${CPUS_PER_POINT:+--cpus-per-point "$CPUS_PER_POINT"} ${GPUS_PER_POINT:+--gpus-per-point "$GPUS_PER_POINT"})

# sweep NAME LAB [sweep flags...] -- [flags for every point]
sweep() {
  local name=$1 lab=$2
  shift 2
  "$PYTHON" -m common.sweep "$lab" --out "$SWEEPS_OUT/$SCALE/$name" "${backend[@]}" "$@"
}
