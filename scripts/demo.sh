#!/usr/bin/env bash
# The README's main job (make demo): generate the embedded dataset, tune MLPF on it with a
# 16-configuration ASHA + TPE study on 2 local worker processes, and print the report (best
# configurations, parameter importances, plots and the best config as a train TOML).
#
#   DEMO_DIR=demo DEMO_EVENTS=1000 scripts/demo.sh
#
# Idempotent: existing data shards are kept and the study is resumed (--resume), so a rerun after
# an interruption continues where it stopped and a rerun after success only prints the report.
set -euo pipefail
cd "$(dirname "$0")/.."
mlpfctl=.venv/bin/mlpfctl
demo=${DEMO_DIR:-demo}
[[ "$demo" = /* ]] || demo=$PWD/$demo
events=${DEMO_EVENTS:-1000}

"$mlpfctl" data generate --process ee_ttbar --events "$events" --out "$demo/data"

# Rungs 20, 60, 180 training steps (eta = 3): a configuration survives to the next rung only in
# the top third of its rung, resuming its checkpoint; the CPU-sized mlpf-small space on the tiny model.
"$mlpfctl" hpo run --space mlpf-small --sampler tpe --scheduler asha --trials 16 --workers 2 \
    --min-resource 20 --max-resource 180 --eta 3 \
    --study demo --storage "sqlite:///$demo/hpo.db" --resume \
    --set data.path="$demo/data" --set model.preset=tiny --set train.val_every=20 \
    --set train.progress=false --set hpo.workdir="$demo/hpo" \
    --report "$demo/hpo-report"

echo "best configuration: $demo/hpo-report/best_config.toml (train it: $mlpfctl train --config $demo/hpo-report/best_config.toml)" >&2
