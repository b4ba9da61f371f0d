#!/bin/sh
# /init of the BMS test image: mount the config drive (label config-2), run firstboot.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
. /lib/bms/common.sh

mount_basics
log "test image: kernel $(uname -r)"
load_modules
dev=""
i=0
while [ $i -lt 100 ]; do
    dev=$(findfs LABEL=config-2 2>/dev/null || findfs LABEL=CONFIG-2 2>/dev/null) && break
    sleep 0.2
    i=$((i + 1))
done
[ -n "$dev" ] || rescue_shell "no filesystem labelled config-2"
mkdir -p /mnt/config
mount -o ro "$dev" /mnt/config || rescue_shell "cannot mount $dev"
log "config drive $dev"
if /bin/bms-firstboot /mnt/config; then
    log "first boot done"
else
    log "first boot failed"
fi
rescue_shell "test image up"
