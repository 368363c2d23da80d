#!/usr/bin/env bash
# local-slurm.sh -- a real one-node SLURM cluster (Debian packages, no systemd, fake GPUs)
# for mlpfctl's integration tests and for users who want to try `mlpfctl submit` locally.
#
#   sudo scripts/local-slurm.sh setup    install if needed, write the config, start the daemons
#   sudo scripts/local-slurm.sh stop     cancel our jobs, stop the daemons this script started
#        scripts/local-slurm.sh status   print the node state (exit 1 when the cluster is down)
#
# setup is idempotent: unchanged settings only check that the node is idle; changed settings
# rewrite /etc/slurm/{slurm,gres}.conf and restart the daemons. Only one such cluster can run on a
# machine (ports 6817/6818 on 127.0.0.1), so setup and stop hold an exclusive lock on
# /tmp/mlpfctl-local-slurm.lock; parallel test workers queue on it instead of fighting.
#
# Settings (environment):
#   MLPFCTL_SLURM_CPUS        CPUs advertised (default 256; more than the machine has is fine:
#                             slurmd trusts slurm.conf, so profile-sized requests pass --test-only)
#   MLPFCTL_SLURM_MEM_MB      RealMemory advertised (default 1100000; memory is not consumable)
#   MLPFCTL_SLURM_GPUS        fake GPUs, gres/gpu (default 8; 0 = none)
#   MLPFCTL_SLURM_PARTITIONS  extra partition names besides debug (default) and gpu, separated
#                             by spaces or commas (the tests pass every system profile's names)
#   MLPFCTL_SLURM_FEATURES    node features, comma separated (default gpu: Perlmutter's -C gpu)
#   MLPFCTL_SLURM_DIR         state, spool, logs, fake devices (default /var/lib/mlpfctl-slurm)
#   MLPFCTL_SLURM_NO_INSTALL  1 = never call apt-get
#   MLPFCTL_SLURM_TIMEOUT     seconds to wait for the node to become idle (default 60)
set -euo pipefail

DIR=${MLPFCTL_SLURM_DIR:-/var/lib/mlpfctl-slurm}
RUN=$DIR/run
CONF=/etc/slurm
LOCK=/tmp/mlpfctl-local-slurm.lock
TAG="# written by mlpfctl scripts/local-slurm.sh"

say() { echo "[local-slurm] $*" >&2; }
fail() { say "error: $*"; exit 1; }

# pid recorded in FILE, if that process is alive and runs BINARY (a stale pid file never
# points us at somebody else's process)
live_pid() {
    local file=$1 binary=$2 pid
    [ -s "$file" ] || return 1
    pid=$(tr -cd '0-9' <"$file")
    [ -n "$pid" ] && [ -e "/proc/$pid/exe" ] || return 1
    [ "$(readlink -f "/proc/$pid/exe")" = "$(readlink -f "$binary")" ] || return 1
    echo "$pid"
}

# SIGTERM the given pids, wait up to 15 s, then SIGKILL the survivors
terminate() {
    local pid n alive
    [ "$#" -gt 0 ] || return 0
    kill -TERM "$@" 2>/dev/null || true
    for n in $(seq 150); do
        alive=0
        for pid in "$@"; do [ ! -e "/proc/$pid" ] || alive=1; done
        [ "$alive" = 1 ] || return 0
        sleep 0.1
    done
    for pid in "$@"; do
        if [ -e "/proc/$pid" ]; then say "pid $pid survived SIGTERM: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
    done
}

install_packages() {
    local bin missing=0
    for bin in slurmctld slurmd sbatch srun scontrol sinfo munged munge; do
        command -v "$bin" >/dev/null || missing=1
    done
    [ "$missing" = 1 ] || return 0
    [ "${MLPFCTL_SLURM_NO_INSTALL:-0}" != 1 ] || fail "SLURM is not installed and MLPFCTL_SLURM_NO_INSTALL=1"
    local pkgs=(slurmctld slurmd slurm-client munge) policy_written=0
    say "installing ${pkgs[*]} (apt log: $DIR/apt.log)"
    mkdir -p "$DIR"
    # the packages' maintainer scripts must not start services (there is no systemd)
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy_written=1
    fi
    local apt=(apt-get -q -y -o DPkg::Lock::Timeout=300)
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends "${pkgs[@]}" >"$DIR/apt.log" 2>&1; then
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" update >>"$DIR/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends "${pkgs[@]}" >>"$DIR/apt.log" 2>&1 \
            || { [ "$policy_written" = 0 ] || rm -f /usr/sbin/policy-rc.d; tail -n 20 "$DIR/apt.log" >&2; fail "apt-get install failed"; }
    fi
    [ "$policy_written" = 0 ] || rm -f /usr/sbin/policy-rc.d
}

node_name() {
    # jobs use the first node name as MASTER_ADDR, so it has to resolve to loopback
    local name addr
    name=$(hostname -s 2>/dev/null || echo localhost)
    addr=$(getent ahostsv4 "$name" 2>/dev/null | awk 'NR == 1 {print $1}')
    case "$addr" in 127.*) echo "$name" ;; *) echo localhost ;; esac
}

write_config() { # NODE -> prints "changed" when a file changed
    local node=$1 cpus=${MLPFCTL_SLURM_CPUS:-256} mem=${MLPFCTL_SLURM_MEM_MB:-1100000}
    local gpus=${MLPFCTL_SLURM_GPUS:-8} features=${MLPFCTL_SLURM_FEATURES:-gpu}
    local comm="" gres_node="" gres_types="" i part parts
    # listen on 127.0.0.1 only when the node name resolves there (else srun cannot resolve it)
    [ "$node" = localhost ] || comm="CommunicationParameters=NoInAddrAny,NoCtldInAddrAny"
    mkdir -p "$CONF" "$RUN" "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/dev"
    if [ "$gpus" -gt 0 ]; then
        # slurmd insists on a character device; /dev/null is one and nothing ever opens it
        for ((i = 0; i < gpus; i++)); do ln -sfn /dev/null "$DIR/dev/nvidia$i"; done
        gres_node="Gres=gpu:$gpus" gres_types="GresTypes=gpu"
    fi
    parts=$(echo "gpu ${MLPFCTL_SLURM_PARTITIONS:-}" | tr ', ' '\n\n' | grep -v -x -e '' -e debug | sort -u)
    local owner=slurm
    id slurm >/dev/null 2>&1 || owner=root
    chown "$owner" "$DIR/state" "$DIR/log"
    {
        echo "$TAG"
        cat <<EOF
ClusterName=mlpfctl-local
SlurmctldHost=$node(127.0.0.1)
SlurmUser=$owner
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
MinJobAge=86400
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=1,bf_interval=1,sched_min_interval=0
SlurmdParameters=config_overrides
EnforcePartLimits=ALL
ReturnToService=2
KillWait=5
InactiveLimit=0
Waittime=0
MailProg=/bin/true
$comm
$gres_types
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$node CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem Features=$features $gres_node State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
        for part in $parts; do echo "PartitionName=$part Nodes=$node Default=NO MaxTime=INFINITE State=UP"; done
    } >"$DIR/slurm.conf.new"
    {
        echo "$TAG"
        echo "AutoDetect=off"
        [ "$gpus" -eq 0 ] || echo "NodeName=$node Name=gpu File=$DIR/dev/nvidia[0-$((gpus - 1))]"
    } >"$DIR/gres.conf.new"
    local f changed=0
    for f in slurm.conf gres.conf; do
        if ! cmp -s "$DIR/$f.new" "$CONF/$f"; then
            if [ -f "$CONF/$f" ] && ! grep -qx "$TAG" "$CONF/$f"; then
                cp -p "$CONF/$f" "$CONF/$f.before-mlpfctl"
                say "kept the previous $CONF/$f as $CONF/$f.before-mlpfctl"
            fi
            install -m 644 "$DIR/$f.new" "$CONF/$f"
            changed=1
        fi
        rm -f "$DIR/$f.new"
    done
    [ "$changed" = 0 ] || echo changed
}

start_munge() {
    local munged
    munged=$(command -v munged)
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0 # ours or somebody else's: fine
    [ -s /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; }
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
    chmod 700 /etc/munge /var/log/munge
    chmod 600 /etc/munge/munge.key
    # munged refuses to run as root
    runuser -u munge -- "$munged" --pid-file=/run/munge/munged.pid </dev/null >/dev/null 2>&1 9>&- || fail "munged did not start (see /var/log/munge/munged.log)"
    cp /run/munge/munged.pid "$RUN/munged.pid"
    local n
    for n in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0; sleep 0.1; done
    fail "munged does not answer"
}

start_daemon() { # NAME BINARY ARGS...
    local name=$1 binary=$2 n
    shift 2
    live_pid "$RUN/$name.pid" "$binary" >/dev/null && return 0
    rm -f "$RUN/$name.pid"
    say "starting $name"
    # 9>&-: the daemons must not inherit (and hold forever) the setup lock
    "$binary" "$@" </dev/null >>"$DIR/log/$name.stdout" 2>&1 9>&- || { tail -n 20 "$DIR/log/$name.log" >&2; fail "$name did not start"; }
    for n in $(seq 100); do live_pid "$RUN/$name.pid" "$binary" >/dev/null && return 0; sleep 0.1; done
    tail -n 20 "$DIR/log/$name.log" >&2
    fail "$name exited (log: $DIR/log/$name.log)"
}

wait_idle() { # NODE
    local node=$1 state deadline resumed=0
    deadline=$(($(date +%s) + ${MLPFCTL_SLURM_TIMEOUT:-60}))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        state=$(timeout 10 sinfo -h -N -n "$node" -o %T 2>/dev/null | head -n 1 || true)
        case "$state" in
            idle | mixed | allocated | completing) echo "$state"; return 0 ;;
            down* | drain* | fail*)
                if [ "$resumed" = 0 ]; then
                    timeout 10 scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true
                    resumed=1
                fi
                ;;
        esac
        sleep 0.2
    done
    tail -n 15 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    fail "node $node is '${state:-not answering}' after ${MLPFCTL_SLURM_TIMEOUT:-60} s"
}

cmd_setup() {
    [ "$(id -u)" = 0 ] || fail "setup needs root (slurmd runs as root)"
    install_packages
    local node changed ctld slurmd state
    node=$(node_name)
    mkdir -p "$RUN"
    changed=$(write_config "$node")
    ctld=$(command -v slurmctld) slurmd=$(command -v slurmd)
    if [ -n "$changed" ]; then
        local pids=() pid
        for pid in $(live_pid "$RUN/slurmd.pid" "$slurmd" || true) $(live_pid "$RUN/slurmctld.pid" "$ctld" || true); do pids+=("$pid"); done
        [ "${#pids[@]}" = 0 ] || { say "configuration changed: restarting"; terminate "${pids[@]}"; }
    fi
    start_munge
    # -c: start without the jobs of an earlier run
    start_daemon slurmctld "$ctld" -c
    start_daemon slurmd "$slurmd" -N "$node"
    state=$(wait_idle "$node")
    say "ready: node $node is $state; partitions: $(sinfo -h -o %P | tr '\n' ' ')"
}

cmd_stop() {
    local ctld slurmd munged jobs n pids=() pid
    ctld=$(command -v slurmctld || echo /nonexistent) slurmd=$(command -v slurmd || echo /nonexistent)
    munged=$(command -v munged || echo /nonexistent)
    if live_pid "$RUN/slurmctld.pid" "$ctld" >/dev/null; then
        jobs=$(timeout 10 squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ' || true)
        if [ -n "${jobs// /}" ]; then
            say "cancelling jobs $jobs"
            # shellcheck disable=SC2086 # one argument per job id
            timeout 10 scancel $jobs 2>/dev/null || true
            for n in $(seq 100); do [ -z "$(timeout 10 squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.1; done
        fi
    fi
    for pid in $(live_pid "$RUN/slurmd.pid" "$slurmd" || true) $(live_pid "$RUN/slurmctld.pid" "$ctld" || true); do pids+=("$pid"); done
    terminate "${pids[@]}"
    # munged only when this script started it
    pid=$(live_pid "$RUN/munged.pid" "$munged" || true)
    [ -z "$pid" ] || terminate "$pid"
    rm -f "$RUN"/*.pid
    say "stopped"
}

cmd_status() {
    local node state
    node=$(node_name)
    state=$(timeout 10 sinfo -h -N -n "$node" -o %T 2>/dev/null | head -n 1 || true)
    [ -n "$state" ] || { echo "down"; return 1; }
    echo "node $node: $state; partitions: $(sinfo -h -o %P | tr '\n' ' ')"
}

main() {
    local cmd=${1:-}
    case "$cmd" in
        setup | stop)
            exec 9>"$LOCK"
            flock 9
            "cmd_$cmd"
            ;;
        status) cmd_status ;;
        *) echo "usage: $0 setup|stop|status" >&2; exit 2 ;;
    esac
}

main "$@"
