#!/usr/bin/env bash
# The README's main job. Until the data and HPO commands land it shows what this machine offers.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/mlpfctl devices
