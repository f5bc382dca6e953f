#!/usr/bin/env bash
# Extracts the ELF vmlinux from a bzImage: the setup header's payload_offset/payload_length
# (boot protocol 2.08+) locate the compressed kernel, whose magic says how to decompress it.
# The lab boots the result to test vmm's ELF loader and PVH entry with a stock kernel.
# usage: extract-vmlinux.sh BZIMAGE OUT
set -euo pipefail
in=$1 out=$2
u8() { od -An -t u1 -j "$1" -N 1 "$in" | tr -d ' '; }
u32() { od -An -t u4 -j "$1" -N 4 "$in" | tr -d ' '; }
setup_sects=$(u8 $((0x1f1)))
[ "$setup_sects" -eq 0 ] && setup_sects=4
offset=$(( (setup_sects + 1) * 512 + $(u32 $((0x248))) ))
length=$(u32 $((0x24c)))
magic=$(od -An -t x1 -j "$offset" -N 4 "$in" | tr -d ' ')
case $magic in
  1f8b*) decompress=(gzip -dc) ;;
  fd377a58) decompress=(xz -dc) ;;
  28b52ffd) decompress=(zstd -dcq) ;;
  02214c18) decompress=(lz4 -dc) ;;
  *) echo "extract-vmlinux: $in: unknown compression (magic $magic)" >&2; exit 1 ;;
esac
tail -c +$((offset + 1)) "$in" | head -c "$length" | "${decompress[@]}" >"$out.tmp" 2>/dev/null || true
# Decompressors complain about the padding after the stream; what counts is a complete ELF.
[ "$(od -An -c -N 4 "$out.tmp" | tr -d ' ')" = '177ELF' ] ||
  { echo "extract-vmlinux: $in: decompressing the payload gave no ELF image" >&2; rm -f "$out.tmp"; exit 1; }
mv "$out.tmp" "$out"
