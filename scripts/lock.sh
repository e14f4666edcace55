#!/usr/bin/env bash
# Re-resolve the full lock files from the direct pins (requirements*.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
links=()
for d in ${PIP_FIND_LINKS:-}; do links+=(--find-links "$d"); done
"$UV" pip compile --quiet --python-version 3.11 "${links[@]}" --no-header requirements.txt -o requirements.lock
"$UV" pip compile --quiet --python-version 3.11 "${links[@]}" --no-header requirements.txt requirements-dev.txt \
  -o requirements-dev.lock.tmp
# The dev lock holds only what the runtime lock lacks.
grep -vxFf <(grep -E '^[A-Za-z0-9]' requirements.lock) <(grep -E '^[A-Za-z0-9]' requirements-dev.lock.tmp) > requirements-dev.lock
rm requirements-dev.lock.tmp
