# Shared by the initramfs /init scripts (busybox sh). Sourced, not run.

log() { echo "bms-init: $*"; }

mount_basics() {
    mkdir -p /proc /sys /dev /tmp /run
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s
    mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
    mount -t tmpfs -o mode=1777 tmpfs /tmp
    mount -t tmpfs -o mode=0755 tmpfs /run
    echo 4 >/proc/sys/kernel/printk 2>/dev/null
}

# Modules in dependency order, one path per line (relative to /lib/modules/<version>).
load_modules() {
    kver=$(uname -r)
    n=0
    while read -r m; do
        [ -n "$m" ] || continue
        insmod "/lib/modules/$kver/$m" 2>/dev/null && n=$((n + 1))
    done </etc/bms/modules
    log "loaded $n modules"
}

# The value of KEY=... on the kernel command line, or empty.
cmdline_arg() {
    for w in $(cat /proc/cmdline); do
        case "$w" in "$1"=*) echo "${w#*=}"; return 0 ;; esac
    done
    return 1
}

nics() {
    for d in /sys/class/net/*; do
        n=${d##*/}
        [ "$n" = lo ] || [ ! -e "$d/device" ] || echo "$n"
    done
}

# Bring every NIC up and print those that report carrier within $1 seconds.
nics_with_link() {
    for n in $(nics); do ip link set "$n" up; done
    end=$(($(cut -d. -f1 /proc/uptime) + ${1:-10}))
    while :; do
        up=""
        for n in $(nics); do
            [ "$(cat /sys/class/net/$n/carrier 2>/dev/null)" = 1 ] && up="$up $n"
        done
        [ -n "$up" ] && [ "$(echo $up | wc -w)" = "$(nics | wc -l)" ] && break
        [ "$(cut -d. -f1 /proc/uptime)" -ge "$end" ] && break
        sleep 0.2
    done
    echo $up
}

rescue_shell() {
    log "$*: starting a shell on the console"
    while :; do setsid cttyhack sh -l; sleep 1; done
}
