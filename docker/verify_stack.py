"""Build-time check of docker/Dockerfile: every pin of requirements.lock is installed at exactly that version.

``python verify_stack.py requirements.lock`` exits 1 listing each package that is missing or at another version.
Local version labels are ignored (the lock pins torch's CPU build ``2.13.0+cpu``; the GPU image installs the same
version's CUDA build ``2.13.0+cu130``). Standard library only: it runs in the image before the project exists.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;#]+)")


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def public(version: str) -> str:
    """The version without its local label (``2.13.0+cpu`` -> ``2.13.0``)."""
    return version.split("+", 1)[0]


def parse_lock(text: str) -> dict[str, str]:
    """``name==version`` lines of a pip-compile/uv lock (comments, options and ``# via`` lines skipped)."""
    pins = {}
    for line in text.splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[canonical(match.group(1))] = match.group(3)
    return pins


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def mismatches(pins: dict[str, str], installed: Callable[[str], str | None] = installed_version) -> list[str]:
    """One line per pin that is not installed at its (public) version."""
    problems = []
    for name, want in sorted(pins.items()):
        have = installed(name)
        if have is None:
            problems.append(f"{name}: not installed (lock pins {want})")
        elif public(have) != public(want):
            problems.append(f"{name}: {have} installed, lock pins {want}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: verify_stack.py REQUIREMENTS_LOCK", file=sys.stderr)
        return 2
    pins = parse_lock(Path(argv[0]).read_text())
    if not pins:
        print(f"verify_stack: no pins found in {argv[0]}", file=sys.stderr)
        return 1
    problems = mismatches(pins)
    if problems:
        print(f"verify_stack: {len(problems)} of {len(pins)} pins of {argv[0]} not installed as locked:",
              file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"verify_stack: all {len(pins)} pins of {argv[0]} installed as locked")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
