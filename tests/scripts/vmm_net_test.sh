#!/usr/bin/env bash
# Tests scripts/vmm-net.sh inside throwaway network namespaces: "host" (where the script runs),
# "wan" (a network the host reaches, which knows no route to the guests) and "guest" (a stand-in for
# a VM: a veth on the bridge instead of the tap).
# Needs root (network namespaces), iproute2, nftables and busybox; exits 77 (skipped) without them.
set -u
S=$(cd "$(dirname "$0")/../.." && pwd)/scripts/vmm-net.sh
skip() { echo "skipped: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"
for tool in ip nft busybox; do command -v $tool >/dev/null || skip "$tool is not installed"; done
work=$(mktemp -d)
export VMM_NET_STATE_DIR=$work/vmmnet-state
fails=0
ok() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails+1)); fi; }
h() { ip netns exec n3h "$@"; }
cleanup() { for n in n3h n3w n3g; do ip netns del $n 2>/dev/null; done; }
cleanup
trap 'cleanup; rm -rf "$work"' EXIT
for n in n3h n3w n3g; do ip netns add $n || skip "ip netns add failed"; done
ip link add wan0 netns n3h type veth peer name eth0 netns n3w
h ip addr add 10.99.0.1/24 dev wan0; h ip link set wan0 up; h ip link set lo up
ip netns exec n3w ip addr add 10.99.0.2/24 dev eth0; ip netns exec n3w ip link set eth0 up
ok "forwarding off before" '[ "$(h cat /proc/sys/net/ipv4/ip_forward)" = 0 ]'

h env SUDO_USER=nobody "$S" up --tap tap0 --nat; ok "up --nat exit 0" '[ $? -eq 0 ]'
ok "tap0 owned by nobody" 'h ip -d link show dev tap0 | grep -q "user nobody"'
ok "tap0 on vmmbr0" 'h ip -o link show dev tap0 | grep -q "master vmmbr0"'
ok "bridge address" 'h ip -4 -o addr show dev vmmbr0 | grep -q 172.20.0.1/24'
ok "nat table" 'h nft list table ip vmm_net_vmmbr0 | grep -q "ip saddr 172.20.0.0/24 oifname != \"vmmbr0\" masquerade"'
ok "forwarding on" '[ "$(h cat /proc/sys/net/ipv4/ip_forward)" = 1 ]'
ok "up again refused" '! h "$S" up --tap tap0 2>/dev/null'

# The guest stand-in reaches the wan only through the bridge, forwarding and masquerade.
ip link add gv0 netns n3h type veth peer name eth0 netns n3g
h ip link set gv0 master vmmbr0; h ip link set gv0 up
ip netns exec n3g sh -c 'ip link set lo up; ip addr add 172.20.0.2/24 dev eth0; ip link set eth0 up; ip route add default via 172.20.0.1'
ok "guest pings its gateway" 'ip netns exec n3g busybox ping -c 1 -W 3 172.20.0.1 >/dev/null'
ok "guest pings the wan (NAT)" 'ip netns exec n3g busybox ping -c 2 -W 3 10.99.0.2 >/dev/null'
ok "wan has no route back (so that was NAT)" '! ip netns exec n3w ip route get 172.20.0.2 >/dev/null 2>&1'

# A second tap on the same bridge; a tap that existed before up.
h "$S" up --tap tap1 >/dev/null; ok "up tap1" '[ $? -eq 0 ]'
h ip tuntap add dev mytap mode tap
h "$S" up --tap mytap >/dev/null; ok "up existing mytap" '[ $? -eq 0 ]'
h "$S" status
h "$S" down --tap tap0; ok "down tap0" '[ $? -eq 0 ]'
ok "tap0 gone" '! h ip link show dev tap0 >/dev/null 2>&1'
ok "bridge kept for tap1, mytap" 'h ip link show dev vmmbr0 >/dev/null 2>&1 && h nft list table ip vmm_net_vmmbr0 >/dev/null 2>&1'
h "$S" down --tap mytap >/dev/null; ok "down mytap" '[ $? -eq 0 ]'
ok "mytap kept, detached" 'h ip -o link show dev mytap | grep -vq master'
h "$S" down --tap tap1; ok "down tap1" '[ $? -eq 0 ]'
ok "bridge gone" '! h ip link show dev vmmbr0 >/dev/null 2>&1'
ok "nat table gone" '[ -z "$(h nft list ruleset)" ]'
ok "forwarding restored" '[ "$(h cat /proc/sys/net/ipv4/ip_forward)" = 0 ]'
ok "state empty" '[ -z "$(ls -A "$VMM_NET_STATE_DIR")" ]'
ok "down unknown refused" '! h "$S" down --tap tap9 2>/dev/null'

# A bridge that existed before (with its own address): up adds a tap, down leaves the bridge as it was.
h ip link add name br9 type bridge; h ip addr add 192.168.9.1/24 dev br9
h "$S" up --tap tap9 --bridge br9 >/dev/null; ok "up on existing bridge" '[ $? -eq 0 ]'
h "$S" down --tap tap9 >/dev/null
ok "existing bridge kept with its address" 'h ip -4 -o addr show dev br9 | grep -q 192.168.9.1/24'
ok "existing bridge down again, as before" '! h ip -o link show dev br9 | grep -q "[<,]UP[,>]"'
ok "bad address refused" '! h "$S" up --address 1.2.3/24 2>/dev/null'
echo "$fails failed"
[ "$fails" -eq 0 ]
