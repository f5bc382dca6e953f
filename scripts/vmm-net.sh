#!/usr/bin/env bash
# Gives vmm guests a network on a Debian host: a tap for `vmm --net tap=NAME`, owned by the user who
# will run vmm (so vmm needs no privileges), on a bridge that has an address (the guests' gateway),
# and optionally NAT from the guests' subnet to the host's other networks. `down` undoes exactly what
# `up` did: what existed before `up` is left alone (up records what it did in a state directory).
#
# usage: sudo vmm-net.sh up [--tap tap0] [--bridge vmmbr0] [--address 172.20.0.1/24] [--nat] [--user NAME]
#        sudo vmm-net.sh down [--tap tap0]
#        vmm-net.sh status
#   --tap NAME       the tap to create (default tap0); run `up` once per guest, each with its own tap
#   --bridge NAME    the bridge the taps join (default vmmbr0; created if missing)
#   --address A/N    the bridge's address, the guests' gateway (default 172.20.0.1/24; used only
#                    when the bridge is created)
#   --nat            masquerade the bridge's subnet (nftables, table "ip vmm_net_<bridge>") and enable
#                    IPv4 forwarding: guests reach what the host reaches
#   --user NAME      who may open the tap (default: $SUDO_USER, else root)
# `down` removes the tap it created and, once no tap made by `up` is left on the bridge, what `up`
# did to the bridge (NAT rules, forwarding back to its old value, the address, the bridge itself).
# Needs iproute2; --nat needs nftables (Debian 12's default firewall: apt-get install nftables).
# State: $VMM_NET_STATE_DIR (default /run/vmm-net).
set -euo pipefail
state_dir=${VMM_NET_STATE_DIR:-/run/vmm-net}
die() { echo "vmm-net: $*" >&2; exit 1; }
usage() { sed -n '7,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
run() { echo "+ $*"; "$@"; }

# The network of ADDRESS/N (172.20.0.1/24 -> 172.20.0.0/24).
network_of() {
  local ip=${1%/*} bits=${1#*/} a b c d n mask
  IFS=. read -r a b c d <<<"$ip"
  n=$(((a << 24) | (b << 16) | (c << 8) | d))
  mask=$(((0xffffffff << (32 - bits)) & 0xffffffff))
  n=$((n & mask))
  echo "$((n >> 24 & 255)).$((n >> 16 & 255)).$((n >> 8 & 255)).$((n & 255))/$bits"
}
# A guest address in that network: the one after the gateway (172.20.0.1/24 -> 172.20.0.2).
next_address() {
  local ip=${1%/*} a b c d
  IFS=. read -r a b c d <<<"$ip"
  echo "$a.$b.$c.$((d + 1))"
}
valid_address() { [[ $1 =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}/([0-9]|[12][0-9]|3[0-2])$ ]]; }
valid_name() { [[ $1 =~ ^[A-Za-z0-9_.-]{1,15}$ ]]; } # a Linux interface name

cmd=${1:-}
[ -n "$cmd" ] || usage
shift
tap=tap0 bridge=vmmbr0 address=172.20.0.1/24 nat=0 user=${SUDO_USER:-}
while [ $# -gt 0 ]; do
  case $1 in
    --tap) tap=${2:-}; shift 2 ;;
    --bridge) bridge=${2:-}; shift 2 ;;
    --address) address=${2:-}; shift 2 ;;
    --nat) nat=1; shift ;;
    --user) user=${2:-}; shift 2 ;;
    -h | --help) usage ;;
    *) echo "vmm-net: unknown argument '$1'" >&2; usage ;;
  esac
done
valid_name "$tap" || die "--tap '$tap': not an interface name"
valid_name "$bridge" || die "--bridge '$bridge': not an interface name"
valid_address "$address" || die "--address '$address': want IPv4/prefix, e.g. 172.20.0.1/24"
command -v ip >/dev/null || die "ip not found (apt-get install iproute2)"

# By ip, not /sys/class/net: that shows the network namespace sysfs was mounted in.
exists() { ip link show dev "$1" >/dev/null 2>&1; }
is_bridge() { ip -d -o link show dev "$1" | grep -q '\\ *bridge '; }
is_tap() { ip -d -o link show dev "$1" | grep -q ' tun type tap '; }
need_root() { [ "$(id -u)" -eq 0 ] || die "$cmd needs root (sudo $0 $cmd ...)"; }

# State files hold shell assignments: $state_dir/tap-NAME (bridge, created_tap) and
# $state_dir/bridge-NAME (created_bridge, raised_bridge, added_address, nat_table, old_forwarding).
up() {
  need_root
  mkdir -p "$state_dir"
  [ ! -e "$state_dir/tap-$tap" ] || die "$tap: already set up by vmm-net.sh (vmm-net.sh down --tap $tap first)"
  if [ -n "$user" ]; then id -u "$user" >/dev/null 2>&1 || die "--user '$user': no such user"; fi
  [ "$nat" -eq 0 ] || command -v nft >/dev/null || die "--nat needs nft (apt-get install nftables)"

  local bstate=$state_dir/bridge-$bridge created_bridge=0 raised_bridge=0 added_address="" nat_table=""
  local old_forwarding=""
  # Saved after every change, so that down undoes what a failed up did, too.
  save() {
    printf 'created_bridge=%s\nraised_bridge=%s\nadded_address=%s\nnat_table=%s\nold_forwarding=%s\n' \
      "$created_bridge" "$raised_bridge" "$added_address" "$nat_table" "$old_forwarding" >"$bstate"
  }
  if [ -e "$bstate" ]; then
    # shellcheck source=/dev/null
    . "$bstate"
    address=${added_address:-$address}
  fi
  if ! exists "$bridge"; then
    run ip link add name "$bridge" type bridge
    created_bridge=1
    save
  elif ! is_bridge "$bridge"; then
    die "$bridge exists and is not a bridge"
  fi
  if [ -z "$added_address" ] && [ "$created_bridge" -eq 1 ]; then
    added_address=$address
    save
    run ip addr add "$address" dev "$bridge"
  fi
  if [ "$created_bridge" -eq 0 ] && ! ip -o link show dev "$bridge" | grep -q '[<,]UP[,>]'; then
    raised_bridge=1
    save
  fi
  run ip link set "$bridge" up
  if [ "$nat" -eq 1 ] && [ -z "$nat_table" ]; then
    local net table=vmm_net_$bridge
    net=$(network_of "$(ip -4 -o addr show dev "$bridge" | awk '{ print $4; exit }')")
    [ "$net" != "/" ] || die "$bridge has no IPv4 address to masquerade for"
    # Its own table, so down deletes exactly these rules; the host's other tables stay as they are.
    run nft -f - <<NFT
table ip $table {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr $net oifname != "$bridge" masquerade
  }
}
NFT
    nat_table=$table
    old_forwarding=$(cat /proc/sys/net/ipv4/ip_forward)
    save
    [ "$old_forwarding" = 1 ] || run sysctl -q -w net.ipv4.ip_forward=1
  fi
  save

  local created_tap=0
  if ! exists "$tap"; then
    created_tap=1
    printf 'bridge=%s\ncreated_tap=%s\n' "$bridge" "$created_tap" >"$state_dir/tap-$tap"
    if [ -n "$user" ]; then
      run ip tuntap add dev "$tap" mode tap user "$user"
    else
      run ip tuntap add dev "$tap" mode tap
    fi
  elif ! is_tap "$tap"; then
    die "$tap exists and is not a tap"
  else
    printf 'bridge=%s\ncreated_tap=%s\n' "$bridge" "$created_tap" >"$state_dir/tap-$tap"
  fi
  run ip link set "$tap" master "$bridge"
  run ip link set "$tap" up

  local gw guest net
  gw=$(ip -4 -o addr show dev "$bridge" | awk '{ print $4; exit }')
  echo
  echo "vmm-net: $tap is on $bridge ($gw)${user:+, usable by $user}$([ -n "$nat_table" ] && echo ", NAT on")"
  echo "Run the guest with:  vmm ... --net tap=$tap"
  if [ -n "$gw" ]; then
    guest=$(next_address "$gw")
    net=${gw#*/}
    echo "In the guest (each guest its own address in $(network_of "$gw")):"
    echo "  ip addr add $guest/$net dev eth0 && ip link set eth0 up && ip route add default via ${gw%/*}"
    if [ -n "$nat_table" ]; then
      echo "  and a DNS resolver in /etc/resolv.conf (the host's, if the guest can reach it)"
    fi
  fi
}

down() {
  need_root
  local tstate=$state_dir/tap-$tap bridge="" created_tap=0
  [ -e "$tstate" ] || die "$tap: not set up by vmm-net.sh (no $tstate)"
  # shellcheck source=/dev/null
  . "$tstate"
  if exists "$tap"; then
    if [ "$created_tap" -eq 1 ]; then
      run ip link del "$tap"
    else
      run ip link set "$tap" nomaster
    fi
  fi
  rm -f "$tstate"

  # The bridge's part goes with the last tap that up put on it.
  local others
  others=$(grep -lx "bridge=$bridge" "$state_dir"/tap-* 2>/dev/null || true)
  if [ -n "$others" ]; then
    echo "vmm-net: $bridge kept: still has $(echo "$others" | sed 's|.*/tap-||' | paste -sd' ' -)"
    return
  fi
  local bstate=$state_dir/bridge-$bridge created_bridge=0 raised_bridge=0 added_address="" nat_table=""
  local old_forwarding=""
  [ -e "$bstate" ] || return 0
  # shellcheck source=/dev/null
  . "$bstate"
  if [ -n "$nat_table" ]; then
    run nft delete table ip "$nat_table"
    [ "$old_forwarding" = 1 ] || run sysctl -q -w "net.ipv4.ip_forward=${old_forwarding:-0}"
  fi
  if exists "$bridge"; then
    if [ "$created_bridge" -eq 1 ]; then
      run ip link del "$bridge"
    else
      [ -z "$added_address" ] || run ip addr del "$added_address" dev "$bridge"
      [ "$raised_bridge" -eq 0 ] || run ip link set "$bridge" down
    fi
  fi
  rm -f "$bstate"
}

status() {
  local f
  for f in "$state_dir"/bridge-* "$state_dir"/tap-*; do
    [ -e "$f" ] || continue
    echo "${f##*/}: $(paste -sd' ' "$f")"
  done
}

case $cmd in
  up) up ;;
  down) down ;;
  status) status ;;
  -h | --help) usage ;;
  *) echo "vmm-net: unknown command '$cmd' (up, down, status)" >&2; usage ;;
esac
