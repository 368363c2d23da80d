#!/bin/bash
# mlpfctl check job on JUWELS Booster (JSC): 4x NVIDIA A100 40 GB per node, 2x EPYC 7402 (48 cores)
# Rendered by `mlpfctl submit` from templates/slurm/train.sh.j2 and
# templates/systems/juwels.toml: change those, not this file.
#SBATCH --job-name=mlpf-check
#SBATCH --partition=booster
#SBATCH --account=myproject
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=48
#SBATCH --gres=gpu:4
#SBATCH --exclusive
#SBATCH --time=02:00:00
#SBATCH --output=/scratch/mlpf/runs/juwels-check/slurm-%j.out
#SBATCH --open-mode=append
# warning signal to this script 300 s before the time limit: checkpoint, then requeue
#SBATCH --signal=B:USR1@300
#SBATCH --threads-per-core=1
set -uo pipefail

# ---- software environment (from the system profile; nothing is downloaded on compute nodes)
module --force purge
module load Stages/2025 GCC OpenMPI CUDA/12 cuDNN MPI-settings/CUDA Python PyTorch
MLPFCTL_PY=/opt/mlpf/venv/bin/python
RUNNER=()
RUN_DIR=/scratch/mlpf/runs/juwels-check
cd "$RUN_DIR" || exit 1

# ---- placement: since Slurm 22.05 srun does not inherit --cpus-per-task
export SRUN_CPUS_PER_TASK="$SLURM_CPUS_PER_TASK"
export OMP_NUM_THREADS=12
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
warned=0
# shellcheck disable=SC2329 # invoked by the trap below
on_warning() {
    warned=1
    echo "mlpfctl: time limit warning: asking the running job steps to checkpoint" >&2
    local pid
    for pid in "${STEPS[@]}"; do kill -s TERM "$pid" 2>/dev/null || true; done
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
# one torchrun per node; is_host=1 on the first node avoids torchrun's host name guessing
# shellcheck disable=SC2016 # expanded by the shell srun starts on each node
start_step srun --ntasks-per-node=1 --cpu-bind=none  \
    bash -c 'export PET_NODE_RANK="$SLURM_NODEID" PET_RDZV_CONF="is_host=$((SLURM_NODEID == 0 ? 1 : 0))"; exec "$@"' mlpfctl-node \
    "${RUNNER[@]}" "$MLPFCTL_PY" -m torch.distributed.run --nnodes="$SLURM_NNODES" --nproc-per-node=4 \
    --rdzv-id="$SLURM_JOB_ID" --rdzv-backend=c10d --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT" \
    -m mlpfctl.systems.check_dist  "${RESUME[@]}"
wait_steps
finish $?
