#!/bin/bash
# mlpfctl data job on JUWELS Booster (JSC): 4x NVIDIA A100 40 GB per node, 2x EPYC 7402 (48 cores)
# Rendered by `mlpfctl submit` from templates/slurm/data.sh.j2 and
# templates/systems/juwels.toml: change those, not this file.
#SBATCH --job-name=mlpf-data
#SBATCH --partition=booster
#SBATCH --account=myproject
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=48
#SBATCH --exclusive
#SBATCH --time=02:00:00
#SBATCH --output=/scratch/mlpf/runs/juwels-data/slurm-%j.out
#SBATCH --open-mode=append
# the time-limit warning: SIGUSR1 to this script 300 s before the end (it stops the steps)
#SBATCH --signal=B:USR1@300
#SBATCH --threads-per-core=1
set -uo pipefail

# ---- software environment (from the system profile; nothing is downloaded on compute nodes)
module --force purge
module load Stages/2025 GCC OpenMPI CUDA/12 cuDNN MPI-settings/CUDA Python PyTorch
MLPFCTL_PY=/opt/mlpf/venv/bin/python
RUNNER=()
# every step starts through mlpfctl.systems.step: it keeps the warning signal pending until the
# training processes ask for it, so that no other process of a step dies of it
STEP=("${RUNNER[@]}" "$MLPFCTL_PY" -m mlpfctl.systems.step)
RUN_DIR=/scratch/mlpf/runs/juwels-data
# where `mlpfctl submit` ran: relative paths in the job's arguments mean what they meant there;
# what the job writes goes to the run directory
cd /scratch/mlpf || exit 1
export MLPFCTL_RUN__OUT_DIR="$RUN_DIR"

# ---- placement: since Slurm 22.05 srun does not inherit --cpus-per-task
export SRUN_CPUS_PER_TASK="$SLURM_CPUS_PER_TASK"
export OMP_NUM_THREADS=48
export GLOO_SOCKET_IFNAME=ib0
export HF_HUB_OFFLINE=1
export NCCL_SOCKET_IFNAME=ib0
export WANDB_MODE=offline

# ---- rendezvous: the first node of the job (+'i': its InfiniBand host name), a port derived from the job id
MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)i"
MASTER_PORT=$((29500 + SLURM_JOB_ID % 1000))
export MASTER_ADDR MASTER_PORT

# ---- job steps run in the background so that the warning signal reaches this script at once
STEPS=()
skipped="" # what the job did not start because of the warning
warned=0
# shellcheck disable=SC2329 # invoked by the trap below
on_warning() {
    [ "$warned" = 0 ] || return 0
    warned=1
    echo "mlpfctl: time-limit warning at $(date -u +%FT%TZ), 300 s before the end: asking every job step to checkpoint and stop" >&2
    # SIGUSR1 to every process of every step (not to this script): the training processes finish
    # their step, agree on it, write one checkpoint and exit 3; the other processes keep it pending
    scancel --signal=USR1 "$SLURM_JOB_ID" || kill -s USR1 "${STEPS[@]}" 2>/dev/null || true
}
trap on_warning USR1
start_step() {
    if [ "$warned" = 1 ]; then
        echo "mlpfctl: after the time-limit warning: not starting $*" >&2
        skipped="$skipped $1"
        return 0
    fi
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
# the last line of the log says how the job ended: `mlpfctl jobs` reads it once SLURM has forgotten
# the job and no accounting (sacct) remembers it
end_job() {
    echo "mlpfctl: job ${SLURM_JOB_ID} ended with exit code $1" >&2
    exit "$1"
}
# data jobs do not resume: after the warning nothing new starts; exit 3 says that work was left out
finish() {
    local rc=$1
    if [ "$rc" = 0 ] && [ -n "$skipped" ]; then
        echo "mlpfctl: stopped at the time-limit warning; not requeued (data jobs do not resume)" >&2
        end_job 3
    fi
    end_job "$rc"
}

# ---- dataset generation: one generator process per CPU of the task (finished shards are kept)
start_step srun --ntasks=1  \
    "${STEP[@]}" -- "$MLPFCTL_PY" -m mlpfctl data generate --workers "$SLURM_CPUS_PER_TASK" --process ee_ttbar --events 1000000 --out /scratch/mlpf/data/ee_ttbar
wait_steps
finish $?
