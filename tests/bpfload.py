"""Test helper: load a trivial BPF socket filter and a BPF map with the bpf() syscall, then
wait. Run as a stand-in connector process so the exporter finds real BPF fds on this kernel."""

from __future__ import annotations

import ctypes
import sys
import time

from amp_exporter.host import bpfsys

BPF_MAP_CREATE, BPF_PROG_LOAD = 0, 5
BPF_MAP_TYPE_ARRAY, BPF_PROG_TYPE_SOCKET_FILTER = 2, 1


class MapCreate(ctypes.Structure):
    _fields_ = [("map_type", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32),
                ("_pad", ctypes.c_uint8 * 112)]


class ProgLoad(ctypes.Structure):
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
                ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
                ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("_pad", ctypes.c_uint8 * 96)]


def load() -> tuple[int, int]:
    map_fd = bpfsys._syscall(BPF_MAP_CREATE, MapCreate(BPF_MAP_TYPE_ARRAY, 4, 8, 1))
    # r0 = 0; exit  (accept nothing)
    insns = (ctypes.c_uint64 * 2)(0x00000000000000B7, 0x0000000000000095)
    license = ctypes.create_string_buffer(b"GPL")
    attr = ProgLoad(BPF_PROG_TYPE_SOCKET_FILTER, 2, ctypes.addressof(insns),
                    ctypes.addressof(license))
    prog_fd = bpfsys._syscall(BPF_PROG_LOAD, attr)
    return prog_fd, map_fd


if __name__ == "__main__":
    fds = load()
    print("loaded", *fds, flush=True)
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 600)
