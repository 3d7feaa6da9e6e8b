# Shared by the scripts in this folder (sourced, not run): the repository root, named steps
# and their failure message, and the settings every script agrees on.
# shellcheck shell=bash

KDR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# At most 2 parallel jobs by default: the development and CI machines have 2 cores.
KDR_JOBS="${KDR_JOBS:-2}"
KDR_BUILD="${KDR_BUILD:-$KDR_ROOT/build}"
KDR_BUILD_ASAN="${KDR_BUILD_ASAN:-$KDR_ROOT/build-asan}"
KDR_VENV="$KDR_ROOT/.venv"
# ccache, when installed, makes rebuilds in fresh build trees cheap; CI works without it.
KDR_LAUNCHER=()
if command -v ccache >/dev/null 2>&1; then
  KDR_LAUNCHER=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
KDR_STEP="(start)"

# step NAME: announce a step; on any failure until the next step, the ERR trap names it.
step() {
  KDR_STEP="$1"
  printf '\n==> %s\n' "$1"
}

kdr_on_error() {
  local rc=$?
  printf '\n%s: FAILED at step "%s" (exit %d)\n' "$(basename "$0")" "$KDR_STEP" "$rc" >&2
  exit "$rc"
}
set -E
trap kdr_on_error ERR

# Seconds since the script started, for the summary lines.
elapsed() { echo "$((SECONDS))s"; }
