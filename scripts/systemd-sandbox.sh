# scripts/systemd-sandbox.sh — boots a real systemd as PID 1 of its own namespaces, the host
# untouched. Sourced by scripts/check-systemd and scripts/check-deb (with REPO set).
#
# The check script runs twice: outside, it calls sandbox_boot, which re-runs it with
# `--inside SCRATCH BINDIR` as PID 1 of new pid, mount, cgroup, network, UTS and IPC
# namespaces. There it calls sandbox_mounts (/etc, /usr and /var become overlays whose
# writes land in SCRATCH, /run and /tmp fresh tmpfs, /sys and /proc/sys read-only, lo up;
# the repository, SCRATCH and BINDIR are reached through /run/check/{repo,scratch,bin}
# from then on), prepares what it needs and ends with sandbox_exec_systemd. Outside again,
# `inside CMD…` runs a command in the namespaces, and `await`, `state` and `fail` help
# the checks. The cleanup trap kills the namespaces' PID 1 and removes SCRATCH.
#
# Needs root (namespaces, mounts, cgroups) and cgroup v1 with a name=systemd hierarchy (as
# here) or cgroup v2 (written for, not tried).

say() { printf '\n==> %s\n' "$*"; }
ok() { printf '    ok: %s\n' "$*"; }
die() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }

# Inside, first: the overlays and fresh file systems. Sets REPO, scratch and bindir to
# their /run/check paths.
sandbox_mounts() {
    local d
    mount --make-rprivate /
    for d in etc usr var; do
        mkdir -p "$scratch/$d.upper" "$scratch/$d.work"
        mount -t overlay overlay -o "lowerdir=/$d,upperdir=$scratch/$d.upper,workdir=$scratch/$d.work" "/$d"
    done
    mount -t tmpfs -o mode=0755 tmpfs /run
    # The repository, the scratch directory and the binaries may live under /tmp, which
    # a tmpfs covers next: reach them through /run/check from here on.
    mkdir -p /run/check/repo /run/check/scratch /run/check/bin
    mount --bind "$REPO" /run/check/repo
    mount --bind "$scratch" /run/check/scratch
    mount --bind "$bindir" /run/check/bin
    REPO=/run/check/repo
    scratch=/run/check/scratch
    bindir=/run/check/bin
    mount -t tmpfs -o mode=1777 tmpfs /tmp
    mount -t proc proc /proc
    mount --bind /proc/sys /proc/sys
    mount -o remount,bind,ro /proc/sys
    # cgroupfs of this cgroup namespace: systemd manages units there.
    if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
        mount -t cgroup2 cgroup2 /sys/fs/cgroup
    else
        mount -t tmpfs -o mode=0755 tmpfs /sys/fs/cgroup
        mkdir /sys/fs/cgroup/systemd
        mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
        local controller
        for controller in devices pids; do
            mkdir "/sys/fs/cgroup/$controller"
            mount -t cgroup -o "$controller" cgroup "/sys/fs/cgroup/$controller" || rmdir "/sys/fs/cgroup/$controller"
        done
        mount -o remount,ro /sys/fs/cgroup
    fi
    mount -o remount,bind,ro /sys
    ip link set lo up
}

# Inside, last: systemd becomes PID 1 and starts nmbridge-check.target (which the script
# wrote to /etc/systemd/system). Only what a check needs: no sysinit.target (its tmpfiles
# would clean the host's /tmp, its sysctl set kernel parameters), no module loading.
sandbox_exec_systemd() {
    local unit
    for unit in modprobe@usbserial.service modprobe@cdc_acm.service network-online.target; do
        ln -sf /dev/null "/etc/systemd/system/$unit"
    done
    export container=nmbridge-check
    exec /lib/systemd/systemd --system --unit=nmbridge-check.target --log-target=journal --show-status=no
}

# Outside: sandbox_boot SCRIPT BINDIR [ENV=VALUE…] creates SCRATCH (as $scratch), boots,
# and sets $init (the namespaces' PID 1 as seen from here).
sandbox_boot() {
    local script=$1 boot_bindir=$2
    shift 2
    mkdir -p "$REPO/.build"
    scratch=$(mktemp -d "$REPO/.build/${script##*/}.XXXXXX")
    chmod 0755 "$scratch"
    sandbox_group=nmbridge-check-$$
    init=""
    trap sandbox_cleanup EXIT
    # A cgroup of our own in every hierarchy systemd uses, so that its cgroup namespace
    # is rooted there and the host's cgroups are not touched.
    (
        for hierarchy in /sys/fs/cgroup/systemd /sys/fs/cgroup/devices /sys/fs/cgroup/pids /sys/fs/cgroup; do
            [ -e "$hierarchy/cgroup.procs" ] || continue
            mkdir -p "$hierarchy/$sandbox_group"
            echo "$BASHPID" >"$hierarchy/$sandbox_group/cgroup.procs"
            [ "$hierarchy" = /sys/fs/cgroup ] && break
        done
        # setpriv: unshare gets SIGKILL when the calling script dies (even by SIGKILL, e.g.
        # with the test that runs it), and --kill-child then ends the namespaces' PID 1 and
        # with it everything inside.
        exec setpriv --pdeathsig KILL -- unshare --fork --kill-child --pid --mount --cgroup --net --uts --ipc \
            env "$@" bash "$script" --inside "$scratch" "$boot_bindir"
    ) >"$scratch/console.log" 2>&1 &
    local boot=$!
    for _ in $(seq 100); do
        init=$(pgrep -P "$boot" | head -n1 || true)
        [ -n "$init" ] && [ "$(cat "/proc/$init/comm" 2>/dev/null)" = systemd ] && break
        init=""
        sleep 0.1
    done
    [ -n "$init" ] || { sed 's/^/    | /' "$scratch/console.log"; die "systemd did not start"; }
}

sandbox_cleanup() {
    if [ -n "${init:-}" ]; then kill -KILL "$init" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    local hierarchy
    for hierarchy in /sys/fs/cgroup/*/"$sandbox_group" /sys/fs/cgroup/"$sandbox_group"; do
        [ -d "$hierarchy" ] && find "$hierarchy" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    [ -z "${scratch:-}" ] || rm -rf "$scratch"
}

inside() { nsenter --target "$init" --mount --pid --uts --ipc --net --cgroup -- "$@"; }

# Waits until the command succeeds (up to $1 seconds).
await() {
    local seconds=$1
    shift
    for _ in $(seq $((seconds * 10))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    return 1
}
state() { inside systemctl show -P "$2" "$1"; }
show_logs() {
    sed 's/^/    console | /' "$scratch/console.log" | tail -n 20
    inside journalctl --no-pager 2>/dev/null | grep -v " kernel: " | tail -n 60 | sed 's/^/    journal | /'
}
fail() { show_logs; [ -z "${CHECK_PAUSE:-}" ] || sleep "$CHECK_PAUSE"; die "$*"; }

# write_nm_image FILE PATIENT_ID N: a one-frame NM image written by DCMTK's dump2dcm (UIDs
# …1234.N.1/2/3), for DCMTK's storescu to send.
write_nm_image() {
    local file=$1 patient=$2 n=$3
    cat >"$file.dump" <<DUMP
(0002,0001) OB 00\01
(0002,0002) UI =NuclearMedicineImageStorage
(0002,0003) UI [1.2.826.0.1.3680043.10.1234.$n.3]
(0002,0010) UI =LittleEndianExplicit
(0008,0016) UI =NuclearMedicineImageStorage
(0008,0018) UI [1.2.826.0.1.3680043.10.1234.$n.3]
(0008,0060) CS [NM]
(0010,0010) PN [Check^Systemd]
(0010,0020) LO [$patient]
(0020,000d) UI [1.2.826.0.1.3680043.10.1234.$n.1]
(0020,000e) UI [1.2.826.0.1.3680043.10.1234.$n.2]
(0028,0002) US 1
(0028,0004) CS [MONOCHROME2]
(0028,0008) IS [1]
(0028,0010) US 2
(0028,0011) US 2
(0028,0100) US 16
(0028,0101) US 16
(0028,0102) US 15
(0028,0103) US 0
(7fe0,0010) OW 0001\\0002\\0003\\0004
DUMP
    /usr/bin/dump2dcm "$file.dump" "$file" >"$file.log" 2>&1 || { sed 's/^/    | /' "$file.log"; return 1; }
}
