#!/bin/sh
# BMS deploy agent: protocol v1 of docs/deploy.md, for busybox sh (wget, sha256sum, dd, od)
# and util-linux sfdisk (GPT disks only), both found in PATH.
#
# Environment (the ramdisk's /init sets the first two from the kernel command line):
#   BMS_API              portal base URL (bms_api=)                 required
#   BMS_BOOT_TOKEN       boot token (bms_boot=)
#   BMS_DISK             disk to use (default: first non-removable disk in $BMS_SYSFS/block)
#   BMS_SYSFS / BMS_PROC / BMS_DEV   roots of /sys, /proc, /dev (tests point them elsewhere)
#   BMS_STATE            scratch directory (default /run/bms-agent)
#   BMS_RETRY_INTERVAL   seconds between lookup retries (default 10)
#   BMS_LOOKUP_TRIES     give up after this many lookups (default 0: never)
#   BMS_HTTP_TIMEOUT     seconds per API call (default 30; image downloads have none)
#   BMS_POWEROFF_CMD / BMS_REBOOT_CMD   default "poweroff -f" / "reboot -f"
# Exit status: 0 when the portal ends the session (401/403) or after power_off/reboot,
# 1 when the lookup fails for good.

: "${BMS_API:?BMS_API is required}"
API=${BMS_API%/}
SYS=${BMS_SYSFS:-/sys}
PROC=${BMS_PROC:-/proc}
DEV=${BMS_DEV:-/dev}
STATE=${BMS_STATE:-/run/bms-agent}
RETRY=${BMS_RETRY_INTERVAL:-10}
HTTP_TIMEOUT=${BMS_HTTP_TIMEOUT:-30}
CR=$(printf '\r')
MiB=1048576
AGENT_TOKEN=""
NODE_ID=""
INTERVAL=10
mkdir -p "$STATE"

log() { echo "bms-agent: $*" >&2; }

# --- encoding ----------------------------------------------------------------------------

# A JSON string literal: backslash, quote, tab and newline escaped, other controls dropped.
json_str() {
    printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\010\013-\037' |
        sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/	/\\t/g' |
        sed -e ':a' -e 'N' -e '$!ba' -e 's/\n/\\n/g')"
}

urldecode() {
    printf '%b' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/%\([0-9A-Fa-f][0-9A-Fa-f]\)/\\x\1/g')"
}

# The value of KEY in a ?format=env answer. Keys are matched case-insensitively with "."
# and "_" alike, so command.args.url, COMMAND_ARGS_URL and command_args_url are one key.
env_get() {
    _want=$2
    while IFS='=' read -r _k _v || [ -n "$_k" ]; do
        _k=$(printf '%s' "$_k" | tr 'A-Z.' 'a-z_')
        if [ "$_k" = "$_want" ]; then
            urldecode "${_v%"$CR"}"
            return 0
        fi
    done <"$1"
    return 1
}

is_true() {
    case "$1" in [Tt]rue | 1 | [Yy]es | [Oo]n) return 0 ;; *) return 1 ;; esac
}

# --- HTTP --------------------------------------------------------------------------------

# api PATH BODY OUTFILE: POST BODY (JSON) to $API/PATH?format=env; sets HTTP_STATUS to the
# status (200 for any success: busybox wget hides which) or "error" (no answer).
api() {
    _url="$API$1?format=env"
    _out=$3
    # One body file per answer file: busy heartbeats run beside the main loop.
    printf '%s' "$2" >"$3.body"
    set -- -O "$3" --header "Content-Type: application/json" --post-file "$3.body"
    [ -n "$AGENT_TOKEN" ] && set -- "$@" --header "X-Agent-Token: $AGENT_TOKEN"
    # Not wget -T: Debian's busybox-static 1.35 wget segfaults with it.
    if timeout "$HTTP_TIMEOUT" wget "$@" "$_url" 2>"$_out.err"; then
        HTTP_STATUS=200
        return 0
    fi
    HTTP_STATUS=$(sed -n 's/.*server returned error: HTTP\/[0-9.]* \([0-9][0-9][0-9]\).*/\1/p' \
        "$_out.err" | head -n 1)
    [ -n "$HTTP_STATUS" ] || HTTP_STATUS=error
    : >"$_out"
    return 1
}

# --- lookup and heartbeats ---------------------------------------------------------------

macs_json() {
    _m=""
    for _d in "$SYS"/class/net/*; do
        [ "${_d##*/}" = lo ] && continue
        _a=$(tr 'A-F' 'a-f' <"$_d/address" 2>/dev/null) || continue
        case "$_a" in "" | 00:00:00:00:00:00) continue ;; esac
        _m="$_m${_m:+, }$(json_str "$_a")"
    done
    printf '[%s]' "$_m"
}

lookup() {
    _body="{\"macs\": $(macs_json), \"boot_token\": $(json_str "$BMS_BOOT_TOKEN")}"
    _n=0
    while :; do
        _n=$((_n + 1))
        api /v1/agent/lookup "$_body" "$STATE/lookup.env" && break
        case "$HTTP_STATUS" in
        409) log "lookup: 409, this operation's agent token was already handed out"; return 1 ;;
        esac
        if [ "${BMS_LOOKUP_TRIES:-0}" -gt 0 ] && [ "$_n" -ge "${BMS_LOOKUP_TRIES:-0}" ]; then
            log "lookup: $HTTP_STATUS, giving up after $_n tries"
            return 1
        fi
        log "lookup: $HTTP_STATUS, retrying in ${RETRY}s"
        sleep "$RETRY"
    done
    NODE_ID=$(env_get "$STATE/lookup.env" node_id)
    AGENT_TOKEN=$(env_get "$STATE/lookup.env" token)
    INTERVAL=$(env_get "$STATE/lookup.env" heartbeat_interval) || INTERVAL=10
    [ -n "$INTERVAL" ] || INTERVAL=10
    if [ -z "$NODE_ID" ] || [ -z "$AGENT_TOKEN" ]; then
        log "lookup: answer without node_id or token"
        return 1
    fi
    log "lookup: node $NODE_ID, heartbeat every ${INTERVAL}s"
}

# heartbeat STATUS PROGRESS MESSAGE OUTFILE
heartbeat() {
    api /v1/agent/heartbeat "{\"node_id\": $(json_str "$NODE_ID"), \"status\": \"$1\", \
\"progress\": $2, \"message\": $(json_str "$3")}" "$4"
}

# Percent done of the running dd (its bytes written, from /proc/PID/io) out of $STATE/total.
progress() {
    _pid=$(cat "$STATE/dd.pid" 2>/dev/null) && _total=$(cat "$STATE/total" 2>/dev/null) &&
        [ "${_total:-0}" -gt 0 ] && _w=$(sed -n 's/^wchar: //p' "$PROC/$_pid/io" 2>/dev/null) &&
        [ -n "$_w" ] || { echo 0; return; }
    _p=$((_w * 100 / _total))
    [ "$_p" -gt 99 ] && _p=99
    echo "$_p"
}

# While a command runs: heartbeat "busy" with its progress. A command handed out in the
# answer (the portal should not do that) is kept and run next, never dropped.
busy_heartbeats() {
    while sleep "$INTERVAL"; do
        heartbeat busy "$(progress)" "$1" "$STATE/busy.env" || continue
        if [ -n "$(env_get "$STATE/busy.env" command_id)" ]; then
            log "a command was handed out while busy: it runs next"
            cp "$STATE/busy.env" "$STATE/pending.env"
        fi
    done
}

# post_result ID OK RESULT_JSON ERROR: retried until the portal takes it (or refuses the token).
post_result() {
    _err=null
    [ -n "$4" ] && _err=$(json_str "$4")
    _body="{\"node_id\": $(json_str "$NODE_ID"), \"ok\": $2, \"result\": ${3:-"{}"}, \"error\": $_err}"
    _i=0
    while [ $_i -lt 10 ]; do
        api "/v1/agent/commands/$1/result" "$_body" "$STATE/result.env" && return 0
        case "$HTTP_STATUS" in 401 | 403 | 404) break ;; esac
        _i=$((_i + 1))
        sleep "$RETRY"
    done
    log "result of command $1 not delivered: $HTTP_STATUS"
    return 1
}

# --- disks -------------------------------------------------------------------------------

first_disk() {
    for _d in "$SYS"/block/*; do
        [ -e "$_d/device" ] || continue # loop, ram, dm-*, md*, zram: no device
        [ "$(cat "$_d/removable" 2>/dev/null)" = 1 ] && continue
        [ "$(cat "$_d/size" 2>/dev/null || echo 0)" -gt 0 ] || continue
        echo "$DEV/${_d##*/}"
        return 0
    done
    return 1
}

# The disk for a command: its "disk" argument, else $BMS_DISK, else the first disk.
disk_path() {
    case "$1" in
    /*) echo "$1" ;;
    ?*) echo "$DEV/$1" ;;
    *) if [ -n "$BMS_DISK" ]; then echo "$BMS_DISK"; else first_disk; fi ;;
    esac
}

disk_size() {
    if [ -b "$1" ]; then blockdev --getsize64 "$1"; else stat -L -c %s "$1"; fi
}

reread_partitions() {
    sync
    [ -b "$1" ] && blockdev --rereadpt "$1" 2>/dev/null
    return 0
}

# Partition device name for number $2 of disk $1: sda → sda2, nvme0n1 → nvme0n1p2.
partition_path() {
    case "$1" in *[0-9]) echo "${1}p$2" ;; *) echo "$1$2" ;; esac
}

# zero DISK OFFSET LENGTH (bytes), without growing a plain file.
zero() {
    [ "$3" -gt 0 ] || return 0
    dd if=/dev/zero of="$1" bs=$MiB oflag=seek_bytes iflag=count_bytes seek="$2" count="$3" \
        conv=notrunc,fsync 2>"$STATE/dd.err"
}

# is_zero DISK OFFSET LENGTH: every byte of the range reads back as 0.
is_zero() {
    _nz=$(dd if="$1" bs=$MiB iflag=skip_bytes,count_bytes skip="$2" count="$3" 2>/dev/null |
        tr -d '\000' | head -c 1 | wc -c)
    _got=$(dd if="$1" bs=$MiB iflag=skip_bytes,count_bytes skip="$2" count="$3" 2>/dev/null | wc -c)
    [ "$_nz" = 0 ] && [ "$_got" = "$3" ]
}

# Little-endian unsigned fields of fixed-size records: "od_records FILE OFFSET COUNT SIZE"
# prints one line of unsigned bytes per record.
od_records() {
    od -An -v -tu1 -w"$4" -j "$2" -N $(($3 * $4)) "$1" 2>/dev/null
}

# "start_sector sectors type slot" for each used primary MBR entry (type in hex).
mbr_entries() {
    od_records "$1" 446 4 16 | awk '{
        t = $5; s = $9 + $10 * 256 + $11 * 65536 + $12 * 16777216
        n = $13 + $14 * 256 + $15 * 65536 + $16 * 16777216
        if (t != 0) printf "%.0f %.0f %02x %d\n", s, n, t, NR }'
}

has_mbr_signature() {
    [ "$(od -An -tx1 -j 510 -N 2 "$1" 2>/dev/null | tr -d ' \n')" = 55aa ]
}

# "first_lba last_lba" of each used GPT entry (512-byte sectors), if the disk has a GPT.
gpt_entries() {
    [ "$(dd if="$1" bs=1 skip=512 count=8 2>/dev/null)" = "EFI PART" ] || return 0
    set -- "$1" $(od_records "$1" 584 1 16 | awk '{
        l = 0; for (i = 8; i >= 1; i--) l = l * 256 + $i
        n = $9 + $10 * 256 + $11 * 65536 + $12 * 16777216
        z = $13 + $14 * 256 + $15 * 65536 + $16 * 16777216
        printf "%.0f %d %d", l, n, z }')
    [ "$4" -ge 128 ] && [ "$3" -le 1024 ] || return 0
    od_records "$1" $(($2 * 512)) "$3" "$4" | awk '{
        used = 0; for (i = 1; i <= 16; i++) if ($i != 0) used = 1
        if (!used) next
        f = 0; for (i = 40; i >= 33; i--) f = f * 256 + $i
        l = 0; for (i = 48; i >= 41; i--) l = l * 256 + $i
        printf "%.0f %.0f\n", f, l }'
}

# "offset length" (bytes) of every partition the disk's tables or the kernel know of.
partition_ranges() {
    mbr_entries "$1" | while read -r _s _n _t _slot; do
        [ "$_t" = ee ] || [ "$_t" = 05 ] || [ "$_t" = 0f ] || [ "$_t" = 85 ] ||
            echo "$((_s * 512)) $((_n * 512))"
    done
    gpt_entries "$1" | while read -r _f _l; do echo "$((_f * 512)) $(((_l - _f + 1) * 512))"; done
    _b=${1##*/}
    for _p in "$SYS/block/$_b/$_b"*; do
        [ -r "$_p/start" ] && echo "$(($(cat "$_p/start") * 512)) $(($(cat "$_p/size") * 512))"
    done
}

# Filesystem label of an image: ISO 9660, FAT12/16/32, ext2/3/4.
fs_label() {
    if [ "$(dd if="$1" bs=1 skip=32769 count=5 2>/dev/null)" = CD001 ]; then
        set -- "$1" 32808 32
    elif [ "$(dd if="$1" bs=1 skip=82 count=5 2>/dev/null)" = FAT32 ]; then
        set -- "$1" 71 11
    elif [ "$(dd if="$1" bs=1 skip=54 count=3 2>/dev/null)" = FAT ]; then
        set -- "$1" 43 11
    elif [ "$(od -An -tx1 -j 1080 -N 2 "$1" 2>/dev/null | tr -d ' \n')" = 53ef ]; then
        set -- "$1" 1144 16
    else
        return 1
    fi
    dd if="$1" bs=1 skip="$2" count="$3" 2>/dev/null | tr -d '\000' | sed 's/ *$//'
}

# Four little-endian bytes of $1 as printf escapes.
le32() {
    printf '\\%03o\\%03o\\%03o\\%03o' $(($1 & 255)) $((($1 >> 8) & 255)) \
        $((($1 >> 16) & 255)) $((($1 >> 24) & 255))
}

# --- commands: each runs in a subshell; arg NAME reads its arguments; on success it writes
# --- $STATE/result.json, on failure it calls fail (the result so far is kept).

arg() { env_get "$CMD" "command_args_$1"; }
result() { printf '%s' "$1" >"$STATE/result.json"; }
fail() {
    printf '%s' "$*" >"$STATE/error"
    log "failed: $*"
    exit 1
}
seconds_since() { awk -v a="$1" -v b="$(cut -d' ' -f1 "$PROC/uptime")" 'BEGIN { printf "%.2f", b - a }'; }

cmd_write_image() {
    url=$(arg url)
    want=$(arg sha256 | tr 'A-F' 'a-f')
    size=$(arg size)
    disk=$(disk_path "$(arg disk)") || fail "no disk found"
    [ -n "$url" ] || fail "write_image: no url"
    [ -n "$want" ] || fail "write_image: no sha256"
    [ -e "$disk" ] || fail "disk $disk does not exist"
    if [ -n "$size" ] && [ "$size" -gt "$(disk_size "$disk")" ]; then
        fail "image ($size bytes) is larger than $disk ($(disk_size "$disk") bytes)"
    fi
    log "write_image: $url -> $disk"
    f=$STATE/img
    rm -f "$f.hash" "$f.count" "$f.disk" "$f.sum" "$f.bytes" "$f.rc"
    mkfifo "$f.hash" "$f.count" "$f.disk"
    sha256sum <"$f.hash" >"$f.sum" &
    hpid=$!
    wc -c <"$f.count" >"$f.bytes" &
    cpid=$!
    dd of="$disk" bs=$MiB conv=notrunc <"$f.disk" 2>"$f.dd" &
    dpid=$!
    echo "$dpid" >"$STATE/dd.pid"
    echo "${size:-0}" >"$STATE/total"
    t0=$(cut -d' ' -f1 "$PROC/uptime")
    { wget --header "X-Agent-Token: $AGENT_TOKEN" -O - "$url" 2>"$f.wget"; echo $? >"$f.rc"; } | tee "$f.hash" "$f.count" >"$f.disk"
    wait "$dpid"
    ddrc=$?
    wait "$hpid" "$cpid"
    rm -f "$STATE/dd.pid"
    reread_partitions "$disk"
    secs=$(seconds_since "$t0")
    got=$(cut -d' ' -f1 "$f.sum")
    bytes=$(tr -d ' \n' <"$f.bytes")
    result "{\"sha256\": \"$got\", \"bytes\": ${bytes:-0}, \"seconds\": $secs, \"disk\": $(json_str "$disk")}"
    [ "$(cat "$f.rc")" = 0 ] || fail "download failed: $(tail -n 1 "$f.wget")"
    [ "$ddrc" = 0 ] || fail "writing $disk failed: $(tail -n 1 "$f.dd")"
    [ -z "$size" ] || [ "$bytes" = "$size" ] || fail "got $bytes bytes, expected $size"
    [ "$got" = "$want" ] || fail "checksum mismatch: got sha256 $got, expected $want"
    log "write_image: $bytes bytes in ${secs}s, sha256 ok"
}

# --- write_configdrive -------------------------------------------------------------------
# The config drive gets its own partition at the end of the disk, 1 MiB-aligned, its size
# the image's rounded up to whole MiB. The bytes go first (dd at the partition's offset on
# the disk itself), then the table entry, then a re-read: a failure half-way leaves no
# partition pointing at a half-written filesystem.
#
# MBR entries are written here by hand: 16 bytes, no checksum, no second copy; sfdisk
# would add CHS values of its own, and MBR deploys keep working without it. A GPT is not
# written by hand: header and entry array carry CRC32s, a backup copy lives at the end of
# the disk and the protective MBR must match; util-linux sfdisk writes it (and tells the
# kernel itself, with BLKPG when a re-read is refused). The ramdisk ships sfdisk.

GPT_LINUX_DATA=0FC63DAF-8483-4772-8E79-3D69D8477DE4

# Download the image into $1 and check its filesystem label against $LABEL; sets HAVE
# (the label as the filesystem spells it).
fetch_configdrive() {
    wget --header "X-Agent-Token: $AGENT_TOKEN" -O "$1" "$url" 2>"$STATE/cd.wget" ||
        fail "download failed: $(tail -n 1 "$STATE/cd.wget")"
    want=$(arg sha256 | tr 'A-F' 'a-f')
    if [ -n "$want" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" != "$want" ]; then
        fail "config drive checksum mismatch"
    fi
    HAVE=$(fs_label "$1") || fail "config drive image: no ISO 9660, FAT or ext filesystem"
    [ "$(lc "$HAVE")" = "$(lc "$LABEL")" ] || fail "config drive label is '$HAVE', expected '$LABEL'"
}

lc() { printf '%s' "$1" | tr 'A-Z' 'a-z'; }

# place_at_end END LAST_END: set START, the highest 1 MiB-aligned sector such that
# $SECTORS sectors fit below END (exclusive) and begin at or after LAST_END.
place_at_end() {
    START=-1
    [ "$1" -ge "$SECTORS" ] && START=$(((($1 - SECTORS) / 2048) * 2048))
    [ "$START" -ge "$2" ] ||
        fail "no room for the config drive ($SECTORS sectors) after the last partition of $DISK"
}

# Zero the partition's sectors, then copy the image to its start.
write_partition_data() {
    zero "$DISK" $((START * 512)) $((SECTORS * 512)) || fail "writing $DISK failed"
    dd if="$1" of="$DISK" bs=$MiB oflag=seek_bytes seek=$((START * 512)) conv=notrunc,fsync \
        2>"$STATE/dd.err" || fail "writing $DISK failed: $(tail -n 1 "$STATE/dd.err")"
}

# A new primary MBR partition (type 0x83) in the first free slot; sets NUMBER.
mbr_configdrive() {
    NUMBER=""
    last_end=2048
    for i in 1 2 3 4; do
        line=$(mbr_entries "$DISK" | awk -v i=$i '$4 == i')
        if [ -z "$line" ]; then
            [ -n "$NUMBER" ] || NUMBER=$i
            continue
        fi
        set -- $line
        [ $(($1 + $2)) -gt "$last_end" ] && last_end=$(($1 + $2))
    done
    [ -n "$NUMBER" ] || fail "$DISK has four primary partitions: no slot for the config drive"
    place_at_end $(($(disk_size "$DISK") / 512)) "$last_end"
    [ $((START + SECTORS)) -le 4294967295 ] || fail "the end of $DISK is beyond MBR's 2 TiB"
    write_partition_data "$IMG"
    # Entry: not bootable, CHS fe ff ff (LBA only), type 0x83, CHS, LBA start, sector count.
    printf "\\000\\376\\377\\377\\203\\376\\377\\377$(le32 $START)$(le32 $SECTORS)" |
        dd of="$DISK" bs=1 seek=$((446 + (NUMBER - 1) * 16)) conv=notrunc,fsync \
            2>"$STATE/dd.err" || fail "writing the partition table failed"
}

# sfdisk_do WHAT ARGS...: sfdisk ARGS $DISK (stdin and stdout passed on); fail with its
# last words on stderr.
sfdisk_do() {
    _what=$1
    shift
    sfdisk "$@" "$DISK" 2>"$STATE/sfdisk.err" ||
        fail "sfdisk $_what on $DISK failed: $(grep -v '^$' "$STATE/sfdisk.err" | tail -n 1)"
}

# A new GPT partition (Linux filesystem data, named after the label); sets NUMBER.
gpt_configdrive() {
    command -v sfdisk >/dev/null 2>&1 || fail "$DISK has a GPT and there is no sfdisk in PATH"
    dump=$STATE/gpt.dump
    sfdisk_do "--dump" --dump >"$dump"
    grep -q '^label: gpt' "$dump" || fail "$DISK has a protective MBR but no valid GPT"
    # A whole-disk image brings its backup GPT at the end of the image, not of the disk,
    # and a last usable sector to match: move both to the disk's end first (what the
    # OS would do on its first boot anyway; the table is valid either way).
    sfdisk_do "--relocate" --relocate gpt-bak-std >/dev/null
    sfdisk_do "--dump" --dump >"$dump"
    ss=$(sed -n 's/^sector-size: *//p' "$dump")
    [ "${ss:-512}" = 512 ] || fail "$DISK has $ss-byte sectors: the agent handles 512 only"
    last_end=$(sed -n 's/^first-lba: *//p' "$dump")
    last_lba=$(sed -n 's/^last-lba: *//p' "$dump")
    sed -n 's/^.* : start= *\([0-9]*\), size= *\([0-9]*\),.*/\1 \2/p' "$dump" >"$dump.parts"
    while read -r s n; do
        [ $((s + n)) -le "$last_end" ] || last_end=$((s + n))
    done <"$dump.parts"
    place_at_end $((last_lba + 1)) "$last_end"
    write_partition_data "$IMG"
    printf 'start=%s, size=%s, type=%s, name="%s"\n' "$START" "$SECTORS" "$GPT_LINUX_DATA" \
        "$(printf '%s' "$LABEL" | tr -d '"\\,')" >"$STATE/sfdisk.in"
    # Never wipe signatures in the new partition: they are the config drive's own.
    sfdisk_do "--append" --append --wipe-partitions never <"$STATE/sfdisk.in" >/dev/null
    sfdisk_do "--dump" --dump >"$dump"
    NUMBER=$(sed -n "s/^.*[^0-9]\([0-9][0-9]*\) : start= *$START, size= *$SECTORS,.*/\1/p" "$dump")
    [ -n "$NUMBER" ] || fail "sfdisk --append on $DISK: no partition at sector $START afterwards"
}

# Download the config drive image (a filesystem labelled config-2), check its label and
# put it into a new partition at the end of the disk (MBR or GPT).
cmd_write_configdrive() {
    url=$(arg url)
    LABEL=$(arg label) || LABEL=config-2
    [ -n "$LABEL" ] || LABEL=config-2
    DISK=$(disk_path "$(arg disk)") || fail "no disk found"
    [ -n "$url" ] || fail "write_configdrive: no url"
    [ -e "$DISK" ] || fail "disk $DISK does not exist"
    IMG=$STATE/configdrive.img
    fetch_configdrive "$IMG"
    SECTORS=$((($(stat -L -c %s "$IMG") + MiB - 1) / MiB * 2048))
    has_mbr_signature "$DISK" || fail "$DISK has no partition table (neither MBR nor GPT)"
    if mbr_entries "$DISK" | awk '$3 == "ee" { found = 1 } END { exit !found }'; then
        table=gpt
        gpt_configdrive
    else
        table=mbr
        mbr_configdrive
    fi
    reread_partitions "$DISK"
    part=$(partition_path "$DISK" "$NUMBER")
    result "{\"partition\": $(json_str "$part"), \"number\": $NUMBER, \"start_sector\": $START, \
\"sectors\": $SECTORS, \"label\": $(json_str "$HAVE")}"
    log "write_configdrive: $part ($table, sectors $START+$SECTORS)"
}

# metadata: the first and last MiB of the disk and of every partition (tables, GPT backup,
# filesystem/RAID/LVM signatures); full: every byte. verify: read the ranges back.
cmd_wipe() {
    mode=$(arg mode) || mode=metadata
    disk=$(disk_path "$(arg disk)") || fail "no disk found"
    [ -e "$disk" ] || fail "disk $disk does not exist"
    size=$(disk_size "$disk")
    ranges=$STATE/wipe.ranges
    case "$mode" in
    metadata | "")
        mode=metadata
        { echo "0 $MiB"; echo "$((size - MiB)) $MiB"; partition_ranges "$disk" |
            while read -r o l; do echo "$o $MiB"; echo "$((o + l - MiB)) $MiB"; done; } |
            awk -v size="$size" '{ o = $1; l = $2; if (o < 0) { l += o; o = 0 }
                if (o + l > size) l = size - o; if (l > 0) printf "%.0f %.0f\n", o, l }' |
            sort -n -u >"$ranges"
        ;;
    full) echo "0 $size" >"$ranges" ;;
    *) fail "wipe: unknown mode '$mode'" ;;
    esac
    echo "$size" >"$STATE/total"
    log "wipe $mode: $disk ($size bytes)"
    bytes=0
    while read -r o l; do
        if [ "$mode" = full ]; then
            dd if=/dev/zero of="$disk" bs=$MiB iflag=count_bytes count="$l" conv=notrunc,fsync \
                2>"$STATE/dd.err" &
            echo $! >"$STATE/dd.pid"
            wait $! || fail "zeroing $disk failed: $(tail -n 1 "$STATE/dd.err")"
        else
            zero "$disk" "$o" "$l" || fail "zeroing $disk failed: $(tail -n 1 "$STATE/dd.err")"
        fi
        bytes=$((bytes + l))
    done <"$ranges"
    rm -f "$STATE/dd.pid"
    reread_partitions "$disk"
    verified=false
    if is_true "$(arg verify)"; then
        while read -r o l; do
            is_zero "$disk" "$o" "$l" || fail "verify: $disk is not zero in bytes $o+$l"
        done <"$ranges"
        verified=true
    fi
    result "{\"bytes\": $bytes, \"verified\": $verified, \"mode\": \"$mode\", \"disk\": $(json_str "$disk")}"
}

cmd_inventory() {
    cpus=$(grep -c '^processor' "$PROC/cpuinfo")
    model=$(sed -n 's/^model name[[:space:]]*: //p' "$PROC/cpuinfo" | head -n 1)
    mem_kb=$(awk '/^MemTotal:/ { print $2 }' "$PROC/meminfo")
    disks=""
    for d in "$SYS"/block/*; do
        [ -e "$d/device" ] || continue
        rot=false
        [ "$(cat "$d/queue/rotational" 2>/dev/null)" = 1 ] && rot=true
        rem=false
        [ "$(cat "$d/removable" 2>/dev/null)" = 1 ] && rem=true
        dmodel=$(cat "$d/device/model" 2>/dev/null | sed 's/ *$//')
        disks="$disks${disks:+, }{\"name\": $(json_str "${d##*/}"), \"size_bytes\": \
$(($(cat "$d/size") * 512)), \"model\": $(json_str "$dmodel"), \"rotational\": $rot, \
\"removable\": $rem}"
    done
    nics=""
    for d in "$SYS"/class/net/*; do
        [ "${d##*/}" = lo ] && continue
        mac=$(tr 'A-F' 'a-f' <"$d/address" 2>/dev/null) || continue
        link=false
        [ "$(cat "$d/carrier" 2>/dev/null)" = 1 ] && link=true
        nics="$nics${nics:+, }{\"name\": $(json_str "${d##*/}"), \"mac\": $(json_str "$mac"), \
\"link\": $link}"
    done
    # The firmware that booted the ramdisk: Linux shows EFI runtime services here.
    boot_mode=bios
    [ -d "$SYS/firmware/efi" ] && boot_mode=uefi
    result "{\"cpus\": $cpus, \"cpu_model\": $(json_str "$model"), \"cpu_arch\": \
$(json_str "$(uname -m)"), \"boot_mode\": \"$boot_mode\", \"memory_mb\": \
$((${mem_kb:-0} / 1024)), \"disks\": [$disks], \"nics\": [$nics]}"
}

# --- main loop ---------------------------------------------------------------------------

run_command() {
    CMD=$1
    cid=$(env_get "$CMD" command_id)
    name=$(env_get "$CMD" command_name)
    log "command $cid: $name"
    rm -f "$STATE/result.json" "$STATE/error" "$STATE/dd.pid" "$STATE/total"
    case "$name" in
    power_off | reboot)
        post_result "$cid" true "{}" ""
        sync
        if [ "$name" = reboot ]; then ${BMS_REBOOT_CMD:-reboot -f}; else ${BMS_POWEROFF_CMD:-poweroff -f}; fi
        exit 0
        ;;
    write_image | write_configdrive | wipe | inventory) ;;
    *)
        post_result "$cid" false "{}" "unknown command '$name'"
        return
        ;;
    esac
    busy_heartbeats "$name" &
    hb=$!
    ("cmd_$name")
    rc=$?
    kill "$hb" 2>/dev/null
    wait "$hb" 2>/dev/null
    res=$(cat "$STATE/result.json" 2>/dev/null) || res="{}"
    if [ "$rc" = 0 ]; then
        post_result "$cid" true "$res" ""
    else
        post_result "$cid" false "$res" "$(cat "$STATE/error" 2>/dev/null || echo "exit status $rc")"
    fi
}

main() {
    lookup || exit 1
    while :; do
        if [ -s "$STATE/pending.env" ]; then
            mv "$STATE/pending.env" "$STATE/command.env"
        elif heartbeat idle 0 "" "$STATE/command.env"; then
            :
        else
            case "$HTTP_STATUS" in
            401 | 403) log "heartbeat: $HTTP_STATUS, the operation is over"; exit 0 ;;
            esac
            log "heartbeat: $HTTP_STATUS"
            sleep "$INTERVAL"
            continue
        fi
        if [ -n "$(env_get "$STATE/command.env" command_id)" ]; then
            run_command "$STATE/command.env"
        else
            sleep "$INTERVAL"
        fi
    done
}

[ "${BMS_AGENT_SOURCE_ONLY:-}" = 1 ] || main
