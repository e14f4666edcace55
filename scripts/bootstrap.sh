#!/usr/bin/env bash
# Create .venv with uv and install the pinned stack (idempotent: a stamp file records what was installed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.installed
want=$(cat requirements.lock requirements-dev.lock pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
fi
# uv ignores pip's settings: point it at the local CPU torch wheel when the machine has one,
# otherwise at PyTorch's CPU index so no multi-GB CUDA build is pulled in.
torch_src=()
if [ -n "${PIP_FIND_LINKS:-}" ]; then
  for d in $PIP_FIND_LINKS; do torch_src+=(--find-links "$d"); done
else
  torch_src+=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
fi
echo "bootstrap: installing pinned requirements into .venv (first time: a few minutes)"
.venv/bin/uv pip install --quiet --python .venv/bin/python "${torch_src[@]}" \
  -r requirements.lock -r requirements-dev.lock
.venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps -e .
echo "$want" > "$stamp"
echo "bootstrap: .venv ready"
