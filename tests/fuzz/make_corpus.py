#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/<target>/ (committed; rerun after changing a
target's input format). Each seed is a small, valid scenario in the target's input encoding (see
the comment at the top of each *_fuzz.cpp): a driver setting a device up and making requests, a
minimal bzImage or vmlinux, a command line. The fuzzer mutates from there."""

import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def u8(v):
    return struct.pack("<B", v & 0xFF)


def u16(v):
    return struct.pack("<H", v & 0xFFFF)


def u32(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def u64(v):
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


def desc(addr, length, flags, nxt):
    return u64(addr) + u32(length) + u16(flags) + u16(nxt)


NEXT, WRITE, INDIRECT = 1, 2, 4


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


# --- virtqueue: config byte, then ops -------------------------------------------------------
VQ_DESC, VQ_RAW, VQ_PUBLISH, VQ_ADVANCE, VQ_AVAIL_FLAGS, VQ_USED_EVENT, VQ_POP_COMPLETE, \
    VQ_POP_HOLD, VQ_COMPLETE_HELD, VQ_DISCARD_HELD, VQ_RESET, VQ_NEEDS_NOTIFICATION = range(12)


def vq_config(log2_size, event_idx=False, indirect=False):
    return u8((log2_size << 2) | (2 if indirect else 0) | (1 if event_idx else 0))


def vq_desc(index, addr, length, flags, nxt):
    return u8(VQ_DESC) + u16(index) + u64(addr) + u32(length) + u16(flags) + u16(nxt)


def vq_pop_complete(count, written, *offsets):
    return u8(VQ_POP_COMPLETE) + u8(count) + u32(written) + b"".join(u32(o) for o in offsets)


def virtqueue():
    write("virtqueue", "direct_chain",
          vq_config(4) + vq_desc(0, 0x3000, 16, NEXT, 1) + vq_desc(1, 0x4000, 512, WRITE, 0) +
          u8(VQ_PUBLISH) + u16(0) + vq_pop_complete(1, 512, 0) + u8(VQ_NEEDS_NOTIFICATION))
    table = desc(0x3000, 16, NEXT, 1) + desc(0x4000, 64, WRITE, 0)
    write("virtqueue", "indirect_chain",
          vq_config(4, indirect=True) + vq_desc(0, 0x5000, len(table), INDIRECT, 0) +
          u8(VQ_RAW) + u16(0x5000) + u8(len(table)) + table + u8(VQ_PUBLISH) + u16(0) +
          vq_pop_complete(1, 64, 8))
    write("virtqueue", "event_idx_out_of_order",
          vq_config(3, event_idx=True) + vq_desc(0, 0x3000, 100, 0, 0) +
          vq_desc(1, 0x3100, 100, WRITE, 0) + u8(VQ_USED_EVENT) + u16(1) + u8(VQ_PUBLISH) +
          u16(0) + u8(VQ_PUBLISH) + u16(1) + u8(VQ_POP_HOLD) + u32(0) + u8(VQ_POP_HOLD) +
          u32(50) + u8(VQ_COMPLETE_HELD) + u8(1) + u32(100) + u8(VQ_NEEDS_NOTIFICATION) +
          u8(VQ_COMPLETE_HELD) + u8(0) + u32(0) + u8(VQ_NEEDS_NOTIFICATION) +
          vq_pop_complete(1, 0))
    write("virtqueue", "reset_with_stale_chain",
          vq_config(2) + vq_desc(0, 0x3000, 32, WRITE, 0) + u8(VQ_PUBLISH) + u16(0) +
          u8(VQ_POP_HOLD) + u32(0) + u8(VQ_RESET) + u8(VQ_COMPLETE_HELD) + u8(0) + u32(32) +
          u8(VQ_PUBLISH) + u16(0) + vq_pop_complete(1, 32, 0))
    write("virtqueue", "loop_and_bad_next",
          vq_config(3) + vq_desc(0, 0x3000, 8, NEXT, 1) + vq_desc(1, 0x3008, 8, NEXT, 0) +
          u8(VQ_PUBLISH) + u16(0) + vq_pop_complete(1, 0, 0))


# --- mmio_transport: ops ---------------------------------------------------------------------
MT_WRITE, MT_READ, MT_RAW, MT_NOTIFY, MT_SIGNAL, MT_MODE, MT_FAR = range(7)


def mt_w(offset, value, width=4):
    return u8(MT_WRITE) + u16(offset) + u8(width) + u64(value)


def mt_r(offset, width=4):
    return u8(MT_READ) + u16(offset) + u8(width)


def mt_init():
    s = mt_r(0x000) + mt_r(0x004) + mt_r(0x008) + mt_w(0x070, 0) + mt_w(0x070, 1) + \
        mt_w(0x070, 3)
    s += mt_w(0x014, 1) + mt_r(0x010) + mt_w(0x014, 0) + mt_r(0x010)
    s += mt_w(0x024, 1) + mt_w(0x020, 1) + mt_w(0x024, 0) + mt_w(0x020, (1 << 28) | (1 << 29) | 1)
    s += mt_w(0x070, 0xB) + mt_r(0x070)
    for q, (size, base) in enumerate(((16, 0x1000), (8, 0x4000))):
        s += mt_w(0x030, q) + mt_r(0x034) + mt_w(0x038, size)
        s += mt_w(0x080, base) + mt_w(0x084, 0) + mt_w(0x090, base + 0x1000) + mt_w(0x094, 0)
        s += mt_w(0x0A0, base + 0x2000) + mt_w(0x0A4, 0) + mt_w(0x044, 1) + mt_r(0x044)
    s += mt_w(0x070, 0xF)
    return s


def mmio_transport():
    init = mt_init()
    chain = desc(0x8000, 64, WRITE, 0)
    avail = u16(0) + u16(1) + u16(0)
    request = u8(MT_RAW) + u16(0x1000) + u8(len(chain)) + chain + u8(MT_RAW) + u16(0x2000) + \
        u8(len(avail)) + avail
    write("mmio_transport", "init_and_notify",
          init + request + mt_w(0x050, 0) + mt_r(0x060) + mt_w(0x064, 1) + mt_r(0x100) +
          mt_w(0x100, 0x55, 1) + mt_r(0x0FC) + mt_w(0x070, 0))
    write("mmio_transport", "ioeventfd_notify_and_signals",
          init + request + u8(MT_NOTIFY) + u32(0) + u8(MT_SIGNAL) + u8(1) + u8(MT_SIGNAL) +
          u8(2) + mt_r(0x070) + mt_r(0x060) + mt_w(0x064, 3) + mt_w(0x070, 0))
    write("mmio_transport", "odd_widths_and_far",
          mt_r(0x001, 2) + mt_r(0x0FE, 8) + mt_w(0x100, 0x1122334455667788, 8) + mt_r(0x10F, 3) +
          u8(MT_FAR) + u64(0xFFFFFFFFFFFFFFFE) + u8(4) + u8(1) + u64(1) + u8(MT_FAR) +
          u64(0x1000) + u8(4) + u8(0) + u64(0))
    write("mmio_transport", "activation_fails",
          u8(MT_MODE) + u8(3) + init + mt_r(0x070) + mt_w(0x070, 0))


# --- virtio_block: options, u16 disk extra, ops ----------------------------------------------
BK_DESC, BK_DATA, BK_PUBLISH, BK_ADVANCE, BK_NOTIFY, BK_RUN, BK_RESET, BK_IO_RESULT, \
    BK_AVAIL_FLAGS, BK_USED_EVENT = range(10)
BLK_IN, BLK_OUT, BLK_FLUSH, BLK_GET_ID, BLK_DISCARD, BLK_WRITE_ZEROES = 0, 1, 4, 8, 11, 13


def bk_desc(index, offset, length, flags, nxt):
    return u8(BK_DESC) + u8(index) + u32(offset) + u32(length) + u16(flags) + u16(nxt)


def bk_data(offset, data):
    return u8(BK_DATA) + u32(offset) + u8(len(data)) + data


def bk_request(first, header_offset, rtype, sector, data=(), status_offset=None, extra=b""):
    """Descriptors first.. for header, data buffers (offset, len, writable), status byte."""
    s = bk_data(header_offset, u32(rtype) + u32(0) + u64(sector) + extra)
    parts = [(header_offset, 16 + len(extra), False)] + list(data)
    if status_offset is not None:
        parts.append((status_offset, 1, True))
    for i, (offset, length, writable) in enumerate(parts):
        last = i == len(parts) - 1
        flags = (WRITE if writable else 0) | (0 if last else NEXT)
        s += bk_desc(first + i, offset, length, flags, first + i + 1)
    return s + u8(BK_PUBLISH) + u16(first)


def virtio_block():
    all_features = u8(0x3A) + u16(0)  # indirect, FLUSH, DISCARD, WRITE_ZEROES
    go = u8(BK_NOTIFY) + u16(0) + u8(BK_RUN)
    write("virtio_block", "read",
          all_features + bk_request(0, 0, BLK_IN, 1, [(0x1000, 1024, True)], 0x3000) + go)
    write("virtio_block", "write_then_read",
          all_features + bk_data(0x1000, bytes(range(64))) +
          bk_request(0, 0, BLK_OUT, 3, [(0x1000, 512, False)], 0x3000) + go +
          bk_request(3, 0x100, BLK_IN, 3, [(0x2000, 512, True)], 0x3001) + go)
    write("virtio_block", "flush_getid_discard_zeroes",
          all_features + bk_request(0, 0, BLK_FLUSH, 0, [], 0x3000) +
          bk_request(2, 0x100, BLK_GET_ID, 0, [(0x1000, 20, True)], 0x3001) +
          bk_request(5, 0x200, BLK_DISCARD, 0, [], 0x3002, u64(8) + u32(16) + u32(0)) +
          bk_request(7, 0x300, BLK_WRITE_ZEROES, 0, [], 0x3003, u64(24) + u32(8) + u32(1)) +
          bk_request(9, 0x400, BLK_WRITE_ZEROES, 0, [], 0x3004, u64(40) + u32(8) + u32(0)) + go)
    # An indirect table holds guest addresses; the data area starts at guest address 0x4000.
    data_area = 0x4000
    table = desc(data_area + 0x4000, 16, NEXT, 1) + \
        desc(data_area + 0x1000, 512, WRITE | NEXT, 2) + desc(data_area + 0x3000, 1, WRITE, 0)
    write("virtio_block", "indirect_event_idx",
          u8(0x3B) + u16(0x100) + bk_data(0x4000, u32(BLK_IN) + u32(0) + u64(2)) +
          bk_data(0x5000, table) + bk_desc(0, 0x5000, len(table), INDIRECT, 0) +
          u8(BK_USED_EVENT) + u16(0) + u8(BK_PUBLISH) + u16(0) + go)
    write("virtio_block", "errors_and_reset",
          u8(0x22) + u16(0x1FF) + u8(BK_IO_RESULT) + u8(0) +
          bk_request(0, 0, BLK_IN, 0, [(0x1000, 512, True)], 0x3000) + go +
          bk_request(3, 0x100, BLK_OUT, 1 << 40, [(0x1000, 512, False)], 0x3001) +
          bk_request(6, 0x200, BLK_IN, 0, [(0x1000, 512, True)]) + u8(BK_NOTIFY) + u16(0) +
          u8(BK_RESET) + bk_request(0, 0, BLK_IN, 0, [(0x1000, 512, True)], 0x3000) + go)


# --- virtio_net: u32 features, u8 refuse, ops ------------------------------------------------
NT_DESC, NT_DATA, NT_PUBLISH, NT_ADVANCE, NT_NOTIFY, NT_RUN, NT_SEND, NT_DRAIN, NT_RESET, \
    NT_USED_EVENT, NT_AVAIL_FLAGS = range(11)
NET_CSUM, NET_GUEST_CSUM, NET_MAC, NET_GUEST_TSO4, NET_MRG_RXBUF, NET_STATUS = \
    1 << 0, 1 << 1, 1 << 5, 1 << 7, 1 << 15, 1 << 16
RING_INDIRECT, RING_EVENT_IDX = 1 << 28, 1 << 29


def nt_desc(queue, index, offset, length, flags, nxt=0):
    return u8(NT_DESC) + u8(queue) + u8(index) + u32(offset) + u32(length) + u16(flags) + u16(nxt)


def nt_send(length, head=b""):
    # The harness scales the u16 to 0..70000 bytes: find the value that gives `length`.
    code = next(c for c in range(0x10000) if c * 70000 // 0xFFFF >= length)
    return u8(NT_SEND) + u16(code) + u8(len(head)) + head


def net_header(flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0):
    return u8(flags) + u8(gso_type) + u16(hdr_len) + u16(gso_size) + u16(csum_start) + \
        u16(csum_offset) + u16(0)


def virtio_net():
    features = u32(NET_MAC | NET_STATUS | NET_CSUM | NET_GUEST_CSUM | RING_INDIRECT) + u8(0)
    frame = net_header() + bytes([0xFF] * 6) + bytes([0x52, 0x54, 0, 0x12, 0x34, 0x56]) + \
        b"\x08\x00" + bytes(46)
    write("virtio_net", "tx",
          features + u8(NT_DATA) + u32(0x1000) + u8(len(frame)) + frame +
          nt_desc(1, 0, 0x1000, 12, NEXT, 1) + nt_desc(1, 1, 0x100C, len(frame) - 12, 0) +
          u8(NT_PUBLISH) + u8(1) + u16(0) + u8(NT_NOTIFY) + u16(1) + u8(NT_DRAIN))
    write("virtio_net", "rx",
          features + nt_desc(0, 0, 0x10000, 1526, WRITE) + u8(NT_PUBLISH) + u8(0) + u16(0) +
          u8(NT_NOTIFY) + u16(0) + nt_send(74, net_header()) + u8(NT_RUN) + u8(NT_RUN))
    mrg = u32(NET_MAC | NET_MRG_RXBUF | NET_GUEST_CSUM | NET_GUEST_TSO4 | RING_EVENT_IDX) + u8(0)
    s = mrg
    for i in range(4):
        s += nt_desc(0, i, 0x10000 + i * 0x1000, 1000, WRITE) + u8(NT_PUBLISH) + u8(0) + u16(i)
    s += u8(NT_USED_EVENT) + u8(0) + u16(0) + u8(NT_NOTIFY) + u16(0)
    s += nt_send(3000, net_header(flags=1, gso_type=1, hdr_len=54, gso_size=1448, csum_start=34,
                                  csum_offset=16)) + u8(NT_RUN) + u8(NT_RUN)
    write("virtio_net", "rx_mergeable", s)
    write("virtio_net", "offloads_refused_then_reset",
          u32(NET_CSUM | NET_GUEST_TSO4) + u8(1) + nt_desc(1, 0, 0x1000, 60, 0) + u8(NT_PUBLISH) +
          u8(1) + u16(0) + u8(NT_NOTIFY) + u16(1) + u8(NT_RESET) + nt_desc(1, 0, 0x1000, 60, 0) +
          u8(NT_PUBLISH) + u8(1) + u16(0) + u8(NT_NOTIFY) + u16(1))
    write("virtio_net", "oversized_host_packet",
          features + nt_desc(0, 0, 0x10000, 2000, WRITE) + u8(NT_PUBLISH) + u8(0) + u16(0) +
          u8(NT_NOTIFY) + u16(0) + nt_send(69000) + nt_send(100, net_header()) + u8(NT_RUN) + u8(NT_RUN))


# --- port devices ----------------------------------------------------------------------------
def port_write(offset, value, width=1):
    return u8((width << 4) | 1) + u8(offset) + u64(value)


def port_read(offset, width=1):
    return u8(width << 4) + u8(offset)


SR_ACCESS, SR_INPUT, SR_FLOOD, SR_REFILL = range(4)


def serial_16550():
    w = lambda port, value: u8(SR_ACCESS) + port_write(port, value)
    r = lambda port: u8(SR_ACCESS) + port_read(port)
    probe = w(1, 0) + w(3, 0x80) + w(0, 1) + w(1, 0) + w(3, 0x03) + w(2, 0xC7) + w(4, 0x0B) + \
        w(1, 0x0F) + r(2) + r(5) + r(6)
    write("serial_16550", "probe_and_echo",
          probe + w(0, ord("h")) + w(0, ord("i")) + r(2) + u8(SR_INPUT) + u8(3) + b"abc" + r(2) +
          r(5) + r(0) + r(0) + r(0) + r(5))
    write("serial_16550", "loopback_and_scratch",
          probe + w(4, 0x10) + w(0, 0x5A) + r(5) + r(0) + r(6) + w(7, 0xA5) + r(7) + w(4, 0x0B))
    write("serial_16550", "flood_and_refill",
          probe + u8(SR_FLOOD) + u16(40000) + r(0) * 20 + u8(SR_REFILL) + r(0) * 4 + r(2))


def i8042():
    w = lambda port, value: port_write(port, value)
    r = port_read
    write("i8042", "linux_probe",
          u8(1) + w(4, 0x20) + r(4) + r(0) + w(4, 0x60) + w(0, 0x47) + w(4, 0xAA) + r(0) +
          w(4, 0xD3) + w(0, 0x5A) + r(0) + w(4, 0xA9) + r(0) + w(0, 0xFF) + r(4) + r(0))
    write("i8042", "reset_through_output_port",
          u8(0) + w(4, 0xD0) + r(0) + w(4, 0xD1) + w(0, 0xFE) + w(4, 0xFE) + r(1, 4) + r(3))


def legacy_ports():
    w = lambda port, value: u8(0x13) + u16(port) + u64(value)
    r = lambda port: u8(0x12) + u16(port)
    time_regs = b"".join(w(0x70, reg) + r(0x71) for reg in (0, 2, 4, 6, 7, 8, 9, 0x32, 0x0A,
                                                            0x0B, 0x0C, 0x0D))
    set_time = w(0x70, 0x0B) + w(0x71, 0x82) + w(0x70, 0x09) + w(0x71, 0x99) + \
        w(0x70, 0x08) + w(0x71, 0x12) + w(0x70, 0x07) + w(0x71, 0x31) + w(0x70, 0x32) + \
        w(0x71, 0x20) + w(0x70, 0x0B) + w(0x71, 0x02)
    write("legacy_ports", "rtc_read_and_set",
          u32(1700000000) + time_regs + set_time + time_regs)
    write("legacy_ports", "binary_12h_mode",
          u32(4102444800) + w(0x70, 0x0B) + w(0x71, 0x04) + time_regs + w(0x70, 0x04) +
          w(0x71, 0x81))
    write("legacy_ports", "platform_ports",
          u32(0) + r(0x505) + w(0x505, 1) + w(0x601, 0x20) + w(0x600, 0x34) + r(0x600) +
          w(0xF4, 3) + u8(0x23) + u16(0xF4) + u64(0x100) + w(0x70, 0x80) + r(0x71))


# --- kernels ---------------------------------------------------------------------------------
def bzimage(payload_size=8192, init_size=4 << 20, version=0x020F, relocatable=True,
            pref_address=16 << 20, setup_sects=4, xloadflags=3):
    setup_size = (setup_sects + 1) * 512
    image = bytearray(setup_size + payload_size)
    fields = [
        (0x1F1, "B", setup_sects), (0x1F4, "I", (payload_size + 15) // 16),
        (0x1FE, "H", 0xAA55), (0x200, "H", 0x6AEB), (0x202, "I", 0x53726448),
        (0x206, "H", version), (0x211, "B", 1), (0x22C, "I", 0x7FFFFFFF),
        (0x230, "I", 2 << 20), (0x234, "B", 1 if relocatable else 0), (0x236, "H", xloadflags),
        (0x238, "I", 2047), (0x258, "Q", pref_address), (0x260, "I", init_size),
    ]
    for offset, fmt, value in fields:
        struct.pack_into("<" + fmt, image, offset, value)
    for i in range(payload_size):
        image[setup_size + i] = (i * 7) & 0xFF
    return bytes(image)


def kernels():
    write("bzimage", "relocatable", bzimage())
    write("bzimage", "fixed_at_1m", bzimage(relocatable=False, payload_size=2048))
    write("bzimage", "protocol_2_12", bzimage(version=0x020C, payload_size=1024,
                                              init_size=1 << 20))
    write("bzimage", "too_big_for_ram", bzimage(init_size=64 << 20, payload_size=512))
    write("elf", "vmlinux", elf([(0xFFFFFFFF81000000, 0x1000000, bytes(range(256)) * 16, 0x2000)],
                                0xFFFFFFFF81000000))
    write("elf", "vmlinux_pvh",
          elf([(0xFFFFFFFF81000000, 0x1000000, bytes(4096), 0x1000),
               (0xFFFFFFFF81200000, 0x1200000, bytes(512), 0x10000)],
              0xFFFFFFFF81000010, pvh_entry=0x1000020))
    write("elf", "physical_entry", elf([(0x200000, 0x200000, b"\xf4" * 64, 64)], 0x200000))


def elf(segments, entry, pvh_entry=None):
    """ELF64 x86-64 ET_EXEC: Ehdr, Phdrs (PT_LOAD each, PT_NOTE with a PVH entry), note, data."""
    phnum = len(segments) + (1 if pvh_entry is not None else 0)
    note = b""
    if pvh_entry is not None:
        note = u32(4) + u32(8) + u32(18) + b"Xen\0" + u64(pvh_entry)
    offset = 64 + phnum * 56
    note_offset = offset
    offset += len(note)
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    ehdr = ident + u16(2) + u16(62) + u32(1) + u64(entry) + u64(64) + u64(0) + u32(0) + \
        u16(64) + u16(56) + u16(phnum) + u16(64) + u16(0) + u16(0)
    phdrs = b""
    data = b""
    for vaddr, paddr, content, memsz in segments:
        phdrs += u32(1) + u32(5) + u64(offset) + u64(vaddr) + u64(paddr) + u64(len(content)) + \
            u64(memsz) + u64(0x1000)
        offset += len(content)
        data += content
    if pvh_entry is not None:
        phdrs += u32(4) + u32(4) + u64(note_offset) + u64(0) + u64(0) + u64(len(note)) + \
            u64(len(note)) + u64(4)
    return ehdr + phdrs + note + data


# --- cli -------------------------------------------------------------------------------------
def cli():
    def argv(*args):
        return b"\0".join(a.encode() for a in args)

    write("cli", "minimal", argv("--kernel", "/k"))
    write("cli", "all_flags",
          argv("-k", "/k", "--initrd", "/i", "--cmdline", "quiet", "--cpus", "4", "--memory",
               "2G", "--serial", "file:/tmp/log", "--timeout", "30", "-vv", "--log-level",
               "debug"))
    write("cli", "disks_and_nets",
          argv("--kernel", "/k", "--disk", "/root.img", "-d",
               "/data.img,readonly=on,serial=data01,io=threads", "--net",
               "tap=tap0,mac=02:00:00:00:00:01", "-n", "tap=tap1"))
    write("cli", "help", argv("--help"))
    write("cli", "version", argv("--version"))
    write("cli", "bad_values",
          argv("--kernel", "/k", "--memory", "1M", "--cpus", "0", "--serial", "file:",
               "--net", "tap=tap0,mac=01:00:00:00:00:00"))


# --- virtio_vsock: u32 features, ops ----------------------------------------------------------
VS_TX, VS_RX, VS_DESC, VS_DATA, VS_PUBLISH, VS_NOTIFY, VS_RUN, VS_CONNECT, VS_SEND, VS_RECEIVE, \
    VS_CLOSE, VS_ACCEPT, VS_RESET = range(13)
VSOCK_REQUEST, VSOCK_RESPONSE, VSOCK_RST, VSOCK_SHUTDOWN, VSOCK_RW, VSOCK_CREDIT_UPDATE, \
    VSOCK_CREDIT_REQUEST = range(1, 8)


def vs_tx(index, op, payload=b"", src=0, dst=0, flags=0, buf_alloc=65536, fwd_cnt=0):
    """dst: 0/1 the host listeners (ports 1024/1025), 0x80 + i the i-th host-initiated port."""
    return u8(VS_TX) + u8(index) + u8(src) + u8(dst) + u16(op) + u32(flags) + u32(buf_alloc) + \
        u32(fwd_cnt) + u8(0) + u8(len(payload)) + payload


def virtio_vsock():
    features = u32(RING_EVENT_IDX | RING_INDIRECT)
    rx = u8(VS_RX) + u8(16) + u16(0x1000)
    run = u8(VS_RUN) + u8(VS_RUN)
    write("virtio_vsock", "guest_connects",
          features + rx + vs_tx(0, VSOCK_REQUEST) + run + u8(VS_ACCEPT) +
          vs_tx(2, VSOCK_RW, b"hello") + u8(VS_RECEIVE) + u8(0) + u8(VS_SEND) + u8(0) + u8(5) +
          b"world" + run + vs_tx(4, VSOCK_SHUTDOWN, flags=3) + run + vs_tx(6, VSOCK_RST) + run)
    write("virtio_vsock", "host_connects",
          features + rx + u8(VS_CONNECT) + u8(0) + u32(1000) + run +
          vs_tx(0, VSOCK_RESPONSE, dst=0x80) + run + u8(VS_RECEIVE) + u8(0) + u8(VS_SEND) +
          u8(0) + u8(4) + b"data" + run + vs_tx(2, VSOCK_CREDIT_UPDATE, dst=0x80, fwd_cnt=4) +
          vs_tx(4, VSOCK_RW, b"reply", dst=0x80) + vs_tx(6, VSOCK_CREDIT_REQUEST, dst=0x80) +
          run + u8(VS_CLOSE) + u8(0) + u8(1) + run + u8(VS_CLOSE) + u8(0) + u8(0) + run)
    write("virtio_vsock", "bad_lines_and_reset",
          features + rx + u8(VS_CONNECT) + u8(1) + u8(9) + b"CONNECT x" + u8(VS_CONNECT) + u8(1) +
          u8(12) + b"GARBAGE\n\n\n\n\n" + run + vs_tx(0, VSOCK_REQUEST, dst=1) + run +
          u8(VS_RESET) + rx + vs_tx(0, VSOCK_RW, b"late") + run)


# --- vcpu_exit: u16 mapping size, u8 layout, then the kvm_run mapping's bytes ---------------------
KVM_EXIT_IO, KVM_EXIT_HLT, KVM_EXIT_MMIO, KVM_EXIT_SHUTDOWN, KVM_EXIT_FAIL_ENTRY, KVM_EXIT_INTR = \
    2, 5, 6, 8, 9, 10
KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_SYSTEM_EVENT = 17, 24
IO_IN, IO_OUT = 0, 1
RUN_PAGES = 3 * 4096  # KVM's x86 mapping: kvm_run, the port data page, the coalesced MMIO ring


def kvm_run(reason, union=b"", data=b""):
    """The mapping's start: kvm_run's header (exit_reason at 8), the exit's union at 32, then (for
    port I/O) `data` at 4096, where KVM puts it."""
    head = bytes(8) + u32(reason) + bytes(20) + union
    if not data:
        return head
    return head + bytes(4096 - len(head)) + data


def io(direction, size, port, count, offset=4096):
    return u8(direction) + u8(size) + u16(port) + u32(count) + u64(offset)


def exit_seed(name, body, layout=0, size=RUN_PAGES):
    write("vcpu_exit", name, u16(size) + u8(layout) + body)


def vcpu_exit():
    exit_seed("outb_debug_exit", kvm_run(KVM_EXIT_IO, io(IO_OUT, 1, 0xf4, 1), b"\x00"))
    exit_seed("outb_i8042_reset", kvm_run(KVM_EXIT_IO, io(IO_OUT, 1, 0x64, 1), b"\xfe"))
    exit_seed("inb_com1_lsr", kvm_run(KVM_EXIT_IO, io(IO_IN, 1, 0x3fd, 1)))
    exit_seed("rep_outsw_com1", kvm_run(KVM_EXIT_IO, io(IO_OUT, 2, 0x3f8, 8), b"rep outs words!!"),
              layout=1)
    # rep insb filling the whole data page, up to the mapping's last byte
    exit_seed("rep_insb_page", kvm_run(KVM_EXIT_IO, io(IO_IN, 1, 0x3f8, 4096, 8192)), layout=1)
    exit_seed("rep_outsl_past_end", kvm_run(KVM_EXIT_IO, io(IO_OUT, 4, 0x3f8, 1025, 8192)),
              layout=1)
    exit_seed("io_small_mapping", kvm_run(KVM_EXIT_IO, io(IO_OUT, 1, 0x3f8, 1)), size=4096)
    mmio = lambda addr, data, length, write_: u64(addr) + data.ljust(8, b"\x00") + u32(length) + \
        u8(write_)
    exit_seed("mmio_write", kvm_run(KVM_EXIT_MMIO, mmio(0xd0000070, b"\x0f", 4, 1)))
    exit_seed("mmio_read_8", kvm_run(KVM_EXIT_MMIO, mmio(0xd0000ff8, b"", 8, 0)), layout=2)
    exit_seed("mmio_too_long", kvm_run(KVM_EXIT_MMIO, mmio(0xd0000000, b"", 9, 0)))
    exit_seed("shutdown", kvm_run(KVM_EXIT_SHUTDOWN))
    for kind in (1, 2, 3, 6):
        exit_seed("system_event_%d" % kind, kvm_run(KVM_EXIT_SYSTEM_EVENT, u32(kind)))
    exit_seed("emulation_failure", kvm_run(KVM_EXIT_INTERNAL_ERROR, u32(1)))
    exit_seed("fail_entry", kvm_run(KVM_EXIT_FAIL_ENTRY, u64(0x80000021)))
    exit_seed("intr", kvm_run(KVM_EXIT_INTR))
    exit_seed("hlt", kvm_run(KVM_EXIT_HLT))
    exit_seed("mapping_too_small", kvm_run(KVM_EXIT_INTR), size=64)


# --- vhost_user_reply: mode byte, then a reply to parse or a conversation --------------------
VU_GET_FEATURES, VU_GET_PROTOCOL_FEATURES, VU_GET_QUEUE_NUM, VU_GET_VRING_BASE, VU_GET_CONFIG, \
    VU_SET_MEM_TABLE, VU_SET_VRING_NUM, VU_SET_VRING_ENABLE, VU_SET_VRING_KICK, \
    VU_SET_FEATURES = range(10)
VU_CODES = [1, 15, 17, 11, 24, 5, 8, 18, 12, 2]


def vu_reply(call, payload, flags=0x5):
    return u32(VU_CODES[call]) + u32(flags) + u32(len(payload)) + payload


def vhost_user_reply():
    # What Debian 12's virtiofsd answered (tests/devices/vhost_user/message_test.cpp).
    replies = [
        (VU_GET_FEATURES, u64(0x175000000)),
        (VU_GET_PROTOCOL_FEATURES, u64(0x8c2b)),
        (VU_GET_QUEUE_NUM, u64(2)),
        (VU_GET_VRING_BASE, u32(1) + u32(7)),  # ring 1, as the target asks
        (VU_GET_CONFIG, b""),  # a refusal
        (VU_SET_MEM_TABLE, u64(0)),
    ]
    for call, payload in replies:
        write("vhost_user_reply", "parse_%d" % call, u8(0) + u8(call) + vu_reply(call, payload))
    write("vhost_user_reply", "parse_config",
          u8(0) + u8(VU_GET_CONFIG) + vu_reply(VU_GET_CONFIG, u32(4) + u32(16) + u32(0) + bytes(16)))
    handshake = [VU_GET_FEATURES, VU_GET_PROTOCOL_FEATURES, VU_GET_QUEUE_NUM]
    stream = b"".join(vu_reply(call, payload) for call, payload in replies[:3])
    write("vhost_user_reply", "handshake",
          u8(1) + u8(0) + u8(len(handshake)) + bytes(handshake) + stream)
    # With REPLY_ACK: every SET_* waits for its ack.
    acked = [VU_SET_MEM_TABLE, VU_SET_VRING_NUM, VU_SET_VRING_KICK, VU_SET_VRING_ENABLE,
             VU_GET_VRING_BASE]
    stream = b"".join(vu_reply(call, u64(0)) for call in acked[:-1]) + \
        vu_reply(VU_GET_VRING_BASE, u32(1) + u32(7))
    write("vhost_user_reply", "acked_ring_setup",
          u8(1) + u8(1) + u8(len(acked)) + bytes(acked) + stream)


# --- virtio_console: port count, port flags, features, then ops ------------------------------
CO_CONTROL, CO_TX_DATA, CO_RX_BUFFERS, CO_DESC, CO_DATA, CO_PUBLISH, CO_NOTIFY, CO_RUN_LOOP, \
    CO_HOST_WRITE, CO_HOST_READ, CO_HOST_CLOSE, CO_SEND, CO_FLUSH, CO_RESET = range(14)
CO_CONSOLE, CO_OUTPUT_PIPE, CO_OUTPUT_CALLBACK, CO_INPUT_PIPE, CO_NAMED = 1, 2, 4, 8, 16
# VIRTIO_CONSOLE_* control events.
CO_DEVICE_READY, CO_PORT_READY, CO_PORT_OPEN = 0, 3, 6
CO_CONTROL_RX = 0x80  # CO_RX_BUFFERS' queue choice: the control receive queue
CO_MULTIPORT = 1 << 1


def co_control(port, event, value):
    return u8(CO_CONTROL) + u8(port) + u16(event) + u16(value) + u8(0)


def co_bytes(op, port, data):
    return u8(op) + u8(port) + u8(len(data)) + data


def virtio_console():
    # The driver's bring-up of a multiport device: control buffers, DEVICE_READY, each port
    # READY and OPEN, receive buffers; then traffic both ways, and the host hanging up.
    def bring_up(ports):
        ops = u8(CO_RX_BUFFERS) + u8(CO_CONTROL_RX) + u8(8) + u16(64)
        ops += co_control(0, CO_DEVICE_READY, 1) + u8(CO_RUN_LOOP)
        for port in range(ports):
            ops += co_control(port, CO_PORT_READY, 1) + co_control(port, CO_PORT_OPEN, 1)
            ops += u8(CO_RX_BUFFERS) + u8(port) + u8(4) + u16(256)
        return ops + u8(CO_RUN_LOOP)

    console = CO_CONSOLE | CO_OUTPUT_PIPE | CO_INPUT_PIPE
    header = u8(0) + u8(console) + u32(CO_MULTIPORT)
    ops = bring_up(1)
    ops += u8(CO_TX_DATA) + u8(0) + u8(0) + u8(6) + b"hello\n"
    ops += co_bytes(CO_HOST_WRITE, 0, b"ls\n") + u8(CO_RUN_LOOP) + u8(CO_HOST_READ) + u8(0)
    write("virtio_console", "console", header + ops)

    channels = [console, CO_OUTPUT_CALLBACK | CO_NAMED, CO_OUTPUT_PIPE | CO_INPUT_PIPE | CO_NAMED]
    header = u8(2) + b"".join(u8(flags) for flags in channels) + u32(CO_MULTIPORT)
    ops = bring_up(3)
    for port in range(3):
        ops += u8(CO_TX_DATA) + u8(port) + u8(port) + u8(4) + b"out" + u8(port)
        ops += co_bytes(CO_SEND, port, b"from host")
    ops += co_bytes(CO_HOST_WRITE, 2, b"input") + u8(CO_HOST_CLOSE) + u8(2) + u8(1)
    ops += u8(CO_RUN_LOOP) + u8(CO_HOST_READ) + u8(2) + u8(CO_FLUSH)
    write("virtio_console", "three_ports", header + ops)

    # Without MULTIPORT: port 0 alone, no control queues in use; then a reset and again.
    header = u8(0) + u8(console) + u32(0)
    ops = u8(CO_RX_BUFFERS) + u8(0) + u8(4) + u16(128)
    ops += u8(CO_TX_DATA) + u8(0) + u8(1) + u8(3) + b"hi\n" + u8(CO_RUN_LOOP)
    ops += u8(CO_RESET) + u8(CO_TX_DATA) + u8(0) + u8(2) + u8(3) + b"re\n" + u8(CO_RUN_LOOP)
    write("virtio_console", "single_port_reset", header + ops)


# --- control_socket: the config's strings, then ops -------------------------------------------
CS_CHUNK, CS_REQUEST, CS_RUN, CS_MACHINE, CS_SPLIT = range(5)
# Indexes into kRequests (control_socket_fuzz.cpp).
CS_STATUS, CS_PAUSE, CS_RESUME, CS_STOP, CS_CONFIG, CS_SNAPSHOT, CS_SNAPSHOT_PAUSED = range(7)
CS_MAX_REQUEST = 64 * 1024


def cs_config(*strings):
    return b"".join(u8(len(s)) + s for s in strings)


def cs_chunk(data):
    return u8(CS_CHUNK) + u16(len(data)) + data


def cs_requests(*which):
    return b"".join(u8(CS_REQUEST) + u8(w) for w in which)


def control_socket():
    config = cs_config(b"/boot/vmlinuz", b"/boot/initrd.img", b"console=ttyS0", b"/var/disk.img",
                       b"serial-1", b"tap0", b"/tmp/console.log", b"/run/vmm.sock")
    write("control_socket", "every_command", config + cs_requests(*range(12)))
    lines = b'{"command":"pause"}\n\n \t\r\n{"command":"status"}\r\n{"command":"resume"}\n'
    write("control_socket", "pipelined_split",
          config + u8(CS_SPLIT) + u8(2) + u16(len(lines)) + lines + cs_chunk(b'{"command":"sta') +
          cs_chunk(b'tus"}\n'))
    write("control_socket", "oversized_then_more",
          config + cs_requests(CS_STATUS) + u8(CS_RUN) + u8(ord("x")) + u32(CS_MAX_REQUEST + 1) +
          cs_requests(CS_STATUS))
    write("control_socket", "exactly_the_bound",
          config + u8(CS_RUN) + u8(ord(" ")) + u32(CS_MAX_REQUEST) + cs_chunk(b"\n") +
          u8(CS_RUN) + u8(ord("a")) + u32(CS_MAX_REQUEST) + cs_chunk(b"\n") +
          cs_requests(CS_STATUS))
    write("control_socket", "failing_machine",
          config + u8(CS_MACHINE) + u8(4 | 3) + cs_requests(CS_PAUSE, CS_SNAPSHOT, CS_STATUS) +
          u8(CS_MACHINE) + u8(1) + cs_requests(CS_SNAPSHOT_PAUSED, CS_STATUS))
    odd = cs_config(b"\xff\xfe/kernel", b"", b"quiet \xc3\x28", b"/d\x00isk", b"\x80", b"t\n",
                    b"", b"/run/\xffsock")
    write("control_socket", "odd_config",
          odd + cs_requests(CS_CONFIG) + cs_chunk(b'\x00\xff{"command":"config"}\n[]\n"x"\n'))


# --- boot_layout: RAM, initrd, cmdline, flags, then the kernel --------------------------------
BL_PVH_EXTENT, BL_RSDP = 1, 2
MIB, GIB = 1 << 20, 1 << 30


def bl_ram(choice, size):
    # The encoding's choice 0 is up to 64 MiB, 1 at the MMIO hole, 2 up to 8 GiB, 3 up to 1 TiB.
    base = 3 * GIB - 64 * MIB if choice == 1 else 0
    return u8(choice) + u64((size - base) // 4096 - 1)


def bl_cmdline(line, length=None):
    return u32(len(line) if length is None else length) + u8(len(line)) + line


def bl_bzimage(relocatable, log2_align, pref, init_size, initrd_addr_max, cmdline_size):
    return (u8(relocatable) + u8(log2_align) + u64(pref) + u32(init_size) + u32(initrd_addr_max) +
            u32(cmdline_size))


def bl_extent(pvh, start, length, initrd_addr_max, cmdline_size):
    return u8(pvh) + u64(start) + u64(length) + u32(initrd_addr_max) + u32(cmdline_size)


def boot_layout():
    console = b"console=ttyS0 panic=-1"
    write("boot_layout", "bzimage_256m_initrd",
          bl_ram(2, 256 * MIB) + u8(1) + u64(16 * MIB) + bl_cmdline(console) + u8(BL_RSDP) +
          bl_bzimage(1, 21, 16 * MIB, 32 * MIB, 0x7fffffff, 2047))
    write("boot_layout", "bzimage_at_the_hole_big_initrd",
          bl_ram(1, 3 * GIB + 16 * MIB) + u8(3) + u64(GIB) + bl_cmdline(console) + u8(0) +
          bl_bzimage(0, 12, 0, 64 * MIB, 0xbfffffff, 255))
    write("boot_layout", "pvh_6g_big_initrd",
          bl_ram(3, 6 * GIB) + u8(3) + u64(512 * MIB) + bl_cmdline(b"root=/dev/vda ", 4000) +
          u8(BL_PVH_EXTENT | BL_RSDP) + bl_extent(1, 16 * MIB, 40 * MIB, 0, 0xffff))
    write("boot_layout", "vmlinux_64bit_16m",
          bl_ram(0, 16 * MIB) + u8(1) + u64(4 * MIB) + bl_cmdline(console) + u8(BL_PVH_EXTENT) +
          bl_extent(0, MIB, 8 * MIB, 0, 0xffff))
    write("boot_layout", "longest_cmdline",
          bl_ram(2, 64 * MIB) + u8(0) + u64(0) + bl_cmdline(b"a", 0xffff) + u8(0) +
          bl_bzimage(1, 21, 16 * MIB, 8 * MIB, 0x7fffffff, 0xffffffff))
    write("boot_layout", "initrd_fills_ram",
          bl_ram(1, 3 * GIB) + u8(2) + u64(32 * MIB) + bl_cmdline(console) + u8(BL_PVH_EXTENT) +
          bl_extent(1, MIB, 16 * MIB, 0xffffffff, 2047))
    write("boot_layout", "tiny_ram",
          bl_ram(0, 4096) + u8(1) + u64(4096) + bl_cmdline(console) + u8(0) +
          bl_bzimage(1, 21, 16 * MIB, 8 * MIB, 0, 2047))


def main():
    virtqueue()
    mmio_transport()
    virtio_block()
    virtio_net()
    virtio_vsock()
    serial_16550()
    i8042()
    legacy_ports()
    vcpu_exit()
    kernels()
    cli()
    vhost_user_reply()
    virtio_console()
    control_socket()
    boot_layout()
    return 0


if __name__ == "__main__":
    sys.exit(main())
