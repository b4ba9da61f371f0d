#!/bin/sh
# First boot of the BMS test image: read the mounted config drive ($1), configure the NIC
# whose MAC network_data.json names with its static IPv4 address, and POST
# {"uuid", "hostname", "ssh_fingerprint", "ip"} to the callback URL.
#
# The callback URL: meta_data.json "meta": {"bms_callback": URL} (instance metadata),
# else bms_callback= on the kernel command line.
# Environment (for tests): BMS_SYSFS (/sys), BMS_CMDLINE (/proc/cmdline), BMS_NET_DRY_RUN=1
# (print the ip commands instead of running them), BMS_JSONFLAT (/lib/bms/jsonflat.awk),
# BMS_CALLBACK_TRIES (60, one every 2 s).

cfg=${1:?usage: firstboot CONFIG_DRIVE_DIR}
SYS=${BMS_SYSFS:-/sys}
FLAT=${BMS_JSONFLAT:-/lib/bms/jsonflat.awk}
log() { echo "bms-testimage: $*" >&2; }

md=$cfg/openstack/latest/meta_data.json
nd=$cfg/openstack/latest/network_data.json
[ -r "$md" ] || { log "no $md"; exit 1; }
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
awk -f "$FLAT" "$md" >"$w/meta.flat" || { log "cannot parse $md"; exit 1; }
if [ -r "$nd" ]; then awk -f "$FLAT" "$nd" >"$w/net.flat"; else : >"$w/net.flat"; fi

# get FILE KEY: the value of the flattened KEY (first match).
get() { sed -n "s/^$2=//p" "$1" | head -n 1; }
json_str() {
    printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}

uuid=$(get "$w/meta.flat" uuid)
hostname=$(get "$w/meta.flat" hostname)
[ -n "$hostname" ] || hostname=$(get "$w/meta.flat" name)
key=$(sed -n 's/^public_keys\.[^=]*=//p' "$w/meta.flat" | head -n 1)
callback=$(get "$w/meta.flat" 'meta\.bms_callback')
if [ -z "$callback" ]; then
    for w in $(cat "${BMS_CMDLINE:-/proc/cmdline}"); do
        case "$w" in bms_callback=*) callback=${w#bms_callback=} ;; esac
    done
fi
log "uuid $uuid, hostname $hostname, callback ${callback:-none}"
[ -n "$hostname" ] && [ -z "$BMS_NET_DRY_RUN" ] && hostname "$hostname"

# SHA256 fingerprint as ssh-keygen -l prints it: base64 of the digest of the key blob.
fingerprint=""
if [ -n "$key" ]; then
    blob=$(echo "$key" | awk '{ print $2 }')
    hex=$(printf '%s' "$blob" | base64 -d | sha256sum | cut -d' ' -f1)
    fingerprint="SHA256:$(printf '%s' "$hex" | xxd -r -p | base64 | tr -d '=\n')"
fi

run() {
    if [ -n "$BMS_NET_DRY_RUN" ]; then echo "$*"; else "$@"; fi
}

# Static IPv4 for each NIC whose MAC a link of network_data.json names.
ip=""
for d in "$SYS"/class/net/*; do
    nic=${d##*/}
    [ "$nic" = lo ] && continue
    mac=$(tr 'A-F' 'a-f' <"$d/address" 2>/dev/null) || continue
    link=$(awk -F= -v mac="$mac" '
        $1 ~ /^links\.[0-9]+\.ethernet_mac_address$/ && tolower($2) == mac {
            split($1, p, "."); print p[2]; exit }' "$w/net.flat")
    [ -n "$link" ] || continue
    link_id=$(get "$w/net.flat" "links\\.$link\\.id")
    net=$(awk -F= -v id="$link_id" '
        $1 ~ /^networks\.[0-9]+\.link$/ && $2 == id { split($1, p, "."); n = p[2] }
        $1 ~ /^networks\.[0-9]+\.type$/ { split($1, p, "."); t[p[2]] = $2 }
        END { if (n != "" && (t[n] == "ipv4" || t[n] == "")) print n }' "$w/net.flat")
    [ -n "$net" ] || continue
    addr=$(get "$w/net.flat" "networks\\.$net\\.ip_address")
    mask=$(get "$w/net.flat" "networks\\.$net\\.netmask")
    gw=$(awk -F= -v n="$net" '
        $1 == "networks." n ".gateway" { print $2; exit }
        $1 ~ "^networks\\." n "\\.routes\\.[0-9]+\\.gateway$" { print $2; exit }' "$w/net.flat")
    case "$addr" in
    */*) prefix=${addr#*/}; addr=${addr%/*} ;;
    *) prefix=$(ipcalc -p "$addr" "${mask:-255.255.255.0}" | sed -n 's/^PREFIX=//p') ;;
    esac
    [ -n "$addr" ] || continue
    run ip link set "$nic" up
    run ip -4 addr add "$addr/$prefix" dev "$nic"
    [ -n "$gw" ] && run ip -4 route add default via "$gw" dev "$nic"
    log "$nic ($mac): $addr/$prefix gateway ${gw:-none}"
    [ -n "$ip" ] || ip=$addr
done
[ -n "$ip" ] || log "no NIC matches network_data.json"

[ -n "$callback" ] || { log "no callback URL"; exit 1; }
body="{\"uuid\": $(json_str "$uuid"), \"hostname\": $(json_str "$hostname"), \
\"ssh_fingerprint\": $(json_str "$fingerprint"), \"ip\": $(json_str "$ip")}"
tries=${BMS_CALLBACK_TRIES:-60}
while [ "$tries" -gt 0 ]; do
    if timeout 20 wget -q -O /dev/null --header "Content-Type: application/json" \
        --post-data "$body" "$callback"; then
        log "callback sent: $body"
        exit 0
    fi
    tries=$((tries - 1))
    sleep 2
done
log "callback to $callback failed"
exit 1
