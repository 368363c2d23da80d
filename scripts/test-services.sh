#!/usr/bin/env bash
# Installs the Debian packages that the integration tests' real services need, once and up front
# (make test calls it), so parallel test workers never queue on the dpkg lock:
#   slurmctld slurmd slurm-client munge  - the local SLURM cluster (scripts/local-slurm.sh)
#   postgresql                           - the HPO storage tests' server (scripts/postgres-test-server.sh)
# The tests start and stop the services themselves. Idempotent; without root it only says why the
# slurm/postgres tests will be skipped.
set -euo pipefail

need=()
for bin in slurmctld slurmd sbatch munged; do
    command -v "$bin" >/dev/null 2>&1 || { need+=(slurmctld slurmd slurm-client munge); break; }
done
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "test-services: not root, so ${need[*]} cannot be installed: the slurm/postgres tests will be skipped" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "test-services: no apt-get (not Debian/Ubuntu): the slurm/postgres tests will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "test-services: installing ${need[*]}" >&2
# Keep the packages' maintainer scripts from starting daemons: the tests start their own.
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy=/usr/sbin/policy-rc.d
fi
trap '[ -n "$policy" ] && rm -f "$policy"' EXIT
install() { apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends "${need[@]}" >/dev/null; }
install || { apt-get update -q -o DPkg::Lock::Timeout=300 >/dev/null && install; } || {
    echo "test-services: apt-get install ${need[*]} failed: the slurm/postgres tests will be skipped" >&2
    exit 0
}
