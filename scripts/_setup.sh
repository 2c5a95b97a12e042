# Shared set-up for scripts/test and scripts/demo (sourced, not run).
# Idempotent: installs only what is missing, so a second run is fast.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

need_debs=()
command -v perf >/dev/null 2>&1 || need_debs+=(linux-perf)
ls /usr/lib/python3/dist-packages/perf.cpython-*.so >/dev/null 2>&1 || need_debs+=(linux-perf)
ls /usr/lib/*/libpfm.so.4 >/dev/null 2>&1 || need_debs+=(libpfm4)
command -v gcc >/dev/null 2>&1 || need_debs+=(gcc)
[ -f /usr/include/linux/perf_event.h ] || need_debs+=(linux-libc-dev)
if [ ${#need_debs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "kvmpmu set-up: missing Debian packages: ${need_debs[*]} (run as root, or: sudo apt-get install ${need_debs[*]})" >&2
    exit 1
  fi
  echo "kvmpmu set-up: installing ${need_debs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${need_debs[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Reinstall only when the packaging or the native shim changed.
extras=${KVMPMU_EXTRAS:-test}
stamp=.venv/.kvmpmu-install-$(cat pyproject.toml setup.py _native/* 2>/dev/null | sha1sum | cut -c1-16)-$extras
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e ".[$extras]" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  .venv/bin/python -c "import kvmpmu._shim" || { echo "kvmpmu set-up: building the native shim failed" >&2; exit 1; }
  rm -f .venv/.kvmpmu-install-*
  touch "$stamp"
fi
