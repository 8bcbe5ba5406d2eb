#!/usr/bin/env bash
# Rebuilds every bundled model and the test fixtures, then the model cards, and says how long it took.
# Needs Debian's PyTorch: apt-get install -y python3-torch python3-onnx python3-numpy python3-pil libopenblas0-pthread
# and the project's node_modules (npm install) for the ONNX Runtime parity checks.
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)
/usr/bin/python3 tools/model-factory/fixtures.py
/usr/bin/python3 tools/model-factory/tiny_sd.py
# tiny-sdxl is built with diffusers' and transformers' classes: a venv (VENV_PYTHON) with torch and
# transformers, and a diffusers checkout (DIFFUSERS_SRC: its src folder). Skipped without them.
if [[ -n "${DIFFUSERS_SRC:-}" && -n "${VENV_PYTHON:-}" ]]; then
  PYTHONPATH="$DIFFUSERS_SRC" "$VENV_PYTHON" tools/model-factory/tiny_sdxl.py
else
  echo "skipping tiny-sdxl: set VENV_PYTHON and DIFFUSERS_SRC (see tiny_sdxl.py)"
fi
/usr/bin/python3 tools/model-factory/tiny_lm.py
/usr/bin/python3 tools/model-factory/tiny_llama.py
/usr/bin/python3 tools/model-factory/cards.py
echo "full rebuild: $(( $(date +%s) - start )) s"
