#!/bin/sh
# /init of the deploy ramdisk: mounts, modules, DHCP on every NIC with link, then the agent.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
. /lib/bms/common.sh

mount_basics
log "kernel $(uname -r), cmdline: $(cat /proc/cmdline)"
load_modules
# Disk drivers probe asynchronously; give block devices a moment to appear.
i=0
while [ $i -lt 25 ] && [ -z "$(ls /sys/block 2>/dev/null | grep -v -e '^loop' -e '^ram')" ]; do
    sleep 0.2; i=$((i + 1))
done

up=$(nics_with_link 10)
[ -n "$up" ] || log "no NIC reports link; trying DHCP on all of them"
[ -n "$up" ] || up=$(nics)
pids=""
for n in $up; do
    # udhcpc forks into the background once it has a lease (and renews it); -n: give up
    # (exit 1) if there is none after 5 tries.
    udhcpc -i "$n" -s /etc/bms/udhcpc.script -p "/run/udhcpc.$n.pid" -t 5 -T 2 -n &
    pids="$pids $!"
done
for p in $pids; do wait "$p"; done
ip -4 -o addr show | grep -v ' lo ' | sed 's/^/bms-init: /'

BMS_API=$(cmdline_arg bms_api) || BMS_API=""
BMS_BOOT_TOKEN=$(cmdline_arg bms_boot) || BMS_BOOT_TOKEN=""
disk=$(cmdline_arg bms_disk) && export BMS_DISK="$disk"
export BMS_API BMS_BOOT_TOKEN
if [ -z "$BMS_API" ]; then
    rescue_shell "no bms_api= on the kernel command line"
fi
log "agent: api $BMS_API"
/bin/bms-agent
rescue_shell "agent exited with status $?"
