#!/bin/bash
# mlpfctl check job on Perlmutter (NERSC): 4x NVIDIA A100 40/80 GB per node, EPYC 7763 (64 cores)
# Rendered by `mlpfctl submit` from templates/slurm/train.sh.j2 and
# templates/systems/perlmutter.toml: change those, not this file.
#SBATCH --job-name=mlpf-check
#SBATCH --qos=regular
#SBATCH --constraint=gpu
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --cpus-per-task=32
#SBATCH --gpus-per-node=4
#SBATCH --time=02:00:00
#SBATCH --output=/scratch/mlpf/runs/perlmutter-check/slurm-%j.out
#SBATCH --open-mode=append
# warning signal to this script 300 s before the time limit: checkpoint, then requeue
#SBATCH --signal=B:USR1@300
set -uo pipefail

# ---- software environment (from the system profile; nothing is downloaded on compute nodes)
module load pytorch
MLPFCTL_PY=/opt/mlpf/venv/bin/python
RUNNER=()
RUN_DIR=/scratch/mlpf/runs/perlmutter-check
cd "$RUN_DIR" || exit 1

# ---- placement: since Slurm 22.05 srun does not inherit --cpus-per-task
export SRUN_CPUS_PER_TASK="$SLURM_CPUS_PER_TASK"
export OMP_NUM_THREADS=32
export FI_MR_CACHE_MONITOR=userfaultfd
export HDF5_USE_FILE_LOCKING=FALSE
export NCCL_NET_GDR_LEVEL=PHB

# ---- rendezvous: the first node of the job, a port derived from the job id
MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
MASTER_PORT=$((29500 + SLURM_JOB_ID % 1000))
export MASTER_ADDR MASTER_PORT

# ---- job steps run in the background so that the warning signal reaches this script at once
STEPS=()
warned=0
# shellcheck disable=SC2329 # invoked by the trap below
on_warning() {
    warned=1
    echo "mlpfctl: time limit warning: asking the running job steps to checkpoint" >&2
    local pid
    for pid in "${STEPS[@]}"; do kill -s USR1 "$pid" 2>/dev/null || true; done
}
trap on_warning USR1
start_step() {
    "$@" &
    STEPS+=("$!")
}
# wait for every step; the status is the last non-zero one
wait_steps() {
    local pid rc=0 status
    for pid in "${STEPS[@]}"; do
        while :; do
            wait "$pid"
            kill -0 "$pid" 2>/dev/null || break
        done
        wait "$pid"
        status=$?
        [ "$status" = 0 ] || rc=$status
    done
    STEPS=()
    return "$rc"
}
finish() {
    [ "$warned" = 0 ] || echo "mlpfctl: the job reached its time-limit warning; not requeued (check jobs are not resumable)" >&2
    exit "$1"
}

# ---- training: resume from the run directory's latest checkpoint after a requeue
RESUME=()
if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then RESUME=(--resume "$RUN_DIR"); fi
# one task per GPU: each reads SLURM_PROCID/SLURM_LOCALID/SLURM_NTASKS and picks its GPU by local rank
start_step srun --kill-on-bad-exit=1 --cpu-bind=cores --gpu-bind=none \
    "${RUNNER[@]}" "$MLPFCTL_PY" -m mlpfctl.systems.check_dist  "${RESUME[@]}"
wait_steps
finish $?
