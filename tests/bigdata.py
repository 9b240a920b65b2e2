"""A real, valid .npz holding one huge all-zero array, written in a second or two: the deflate
stream of a block of zeros is the same bytes every time after a full flush, so it is repeated, and
the CRC-32 of the zeros is combined (zlib's crc32_combine) instead of computed byte by byte."""

import io
import struct
import zlib

import numpy as np

CHUNK = 1 << 26  # 64 MiB of zeros per repeated deflate block


def _gf2_times(matrix, vector):
    total = 0
    for row in matrix:
        if not vector:
            break
        if vector & 1:
            total ^= row
        vector >>= 1
    return total


def _gf2_square(matrix):
    return [_gf2_times(matrix, row) for row in matrix]


def crc32_combine(crc1, crc2, len2):
    """The CRC-32 of A + B from the CRC-32s of A and B and the length of B in bytes (zlib's method:
    appending zeros is a linear map of the CRC register, squared for each bit of the length)."""
    operator = [0xEDB88320] + [1 << i for i in range(31)]  # one zero bit
    for _ in range(3):
        operator = _gf2_square(operator)  # one zero byte
    while len2 > 0:
        if len2 & 1:
            crc1 = _gf2_times(operator, crc1)
        len2 >>= 1
        operator = _gf2_square(operator)
    return crc1 ^ crc2


def huge_zero_npz(path, name, shape, dtype=np.float32):
    """Write path: an .npz (zip64, deflated) whose member name.npy is an all-zero array of shape."""
    head = io.BytesIO()
    np.lib.format.write_array_header_2_0(head, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                "fortran_order": False, "shape": tuple(shape)})
    header = head.getvalue()
    payload = int(np.prod(shape)) * np.dtype(dtype).itemsize
    size = len(header) + payload
    chunks, rest = divmod(payload, CHUNK)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(bytes(CHUNK)) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(bytes(CHUNK)) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert block == again  # what makes repeating the block valid
    last = compressor.compress(bytes(rest)) + compressor.flush()
    crc_block, crc = zlib.crc32(bytes(CHUNK)), zlib.crc32(header)
    for _ in range(chunks):  # 160 combines for 10 GiB: instant next to hashing the bytes
        crc = crc32_combine(crc, crc_block, CHUNK)
    crc = crc32_combine(crc, zlib.crc32(bytes(rest)), rest)
    compressed = len(first) + chunks * len(block) + len(last)
    filename = (name + ".npy").encode()
    zip64 = struct.pack("<HHQQ", 0x0001, 16, size, compressed)
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 8, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                        len(filename), len(zip64)) + filename + zip64
    with open(path, "wb") as f:
        f.write(local)
        f.write(first)
        for _ in range(chunks):
            f.write(block)
        f.write(last)
        directory_at = f.tell()
        central_extra = struct.pack("<HHQQQ", 0x0001, 24, size, compressed, 0)
        central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 8, 0, 0x21, crc, 0xFFFFFFFF,
                              0xFFFFFFFF, len(filename), len(central_extra), 0, 0, 0, 0, 0xFFFFFFFF)
        central += filename + central_extra
        f.write(central)
        end64_at = f.tell()
        f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, 1, 1, len(central), directory_at))
        f.write(struct.pack("<IIQI", 0x07064B50, 0, end64_at, 1))
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), 0xFFFFFFFF, 0))
    return path
