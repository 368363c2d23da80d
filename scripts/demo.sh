#!/usr/bin/env bash
# The README's main job (make demo): generate the embedded dataset, tune MLPF on it for jet-response
# resolution with a 16-configuration ASHA + TPE study on 2 local worker processes, train the best
# configuration longer, and evaluate it against the rule-based particle flow: the MLPF-vs-baseline
# table (jet response median and IQR, MET residual, efficiency and fake rate per class).
#
#   DEMO_DIR=demo DEMO_EVENTS=3000 DEMO_TRIALS=16 DEMO_STEPS=1500 scripts/demo.sh
#
# Idempotent: existing data shards are kept, the study is resumed (--resume) and a finished final
# training is reused, so a rerun after an interruption continues where it stopped and a rerun after
# success only prints the results.
set -euo pipefail
cd "$(dirname "$0")/.."
mlpfctl=.venv/bin/mlpfctl
demo=${DEMO_DIR:-demo}
[[ "$demo" = /* ]] || demo=$PWD/$demo
events=${DEMO_EVENTS:-3000}
trials=${DEMO_TRIALS:-16}
steps=${DEMO_STEPS:-1500}

"$mlpfctl" data generate --process ee_ttbar --events "$events" --out "$demo/data"

# The objective is the validation jet-response IQR (hpo.metrics=jet_iqr), not the loss. Rungs 20,
# 60, 180 training steps (eta = 3): a configuration survives to the next rung only in the top third
# of its rung, resuming its checkpoint; the CPU-sized mlpf-small space on the tiny model (physics
# inputs: scaled features, track-cluster link features, correction outputs; neutral hadrons
# weighted 5x in the class loss, as in the physics recipe).
"$mlpfctl" hpo run --space mlpf-small --sampler tpe --scheduler asha --trials "$trials" --workers 2 \
    --min-resource 20 --max-resource 180 --eta 3 \
    --study demo --storage "sqlite:///$demo/hpo.db" --resume \
    --set data.path="$demo/data" --set model.preset=tiny --set train.val_every=20 \
    --set train.loss_class_weights=1,1,5,1,1,1 \
    --set hpo.metrics=jet_iqr --set hpo.directions=minimize \
    --set train.progress=false --set hpo.workdir="$demo/hpo" \
    --report "$demo/hpo-report"

# The best configuration, trained for $steps steps (its LR schedule stretched to match), then
# evaluated on the test split against the rule-based baseline and the target particles.
best="$demo/best"
if ! grep -qs "\"step\": $steps," "$best/result.json"; then
    resume=()
    # a run directory belongs to one run: continue it (from scratch if it stopped before its first
    # checkpoint), never train into it afresh
    [[ -f "$best/run.json" ]] && resume=(--resume "$best")
    "$mlpfctl" train --config "$demo/hpo-report/best_config.toml" --run-dir "$best" "${resume[@]}" \
        --steps "$steps" --set train.schedule_steps="$steps" --set train.val_every=500 \
        --set train.checkpoint_every=500 --set train.progress=true
fi
"$mlpfctl" evaluate "$best"
