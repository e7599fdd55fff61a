"""LwM2M payload encodings of simulated resources, without I/O: text/plain and OMA-TLV
"Resource with Value" (LwM2M 1.0 §6.4.3; docs/vendors/pelion.md §8)."""

from __future__ import annotations

import struct

__all__ = ["TEXT_PLAIN", "TLV", "Value", "decode_tlv", "encode_text", "encode_tlv"]

TEXT_PLAIN = "text/plain"
TLV = "application/vnd.oma.lwm2m+tlv"

Value = str | int | float | bool | bytes


def encode_text(value: Value) -> bytes:
    """The ``text/plain`` payload of a value (LwM2M plain text: booleans are ``0``/``1``)."""
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, bytes):
        return value
    if isinstance(value, int | float):
        return repr(value).encode()
    return value.encode()


def _tlv_value(value: Value) -> bytes:
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, int):
        for size in (1, 2, 4, 8):
            if -(1 << (8 * size - 1)) <= value < 1 << (8 * size - 1):
                return value.to_bytes(size, "big", signed=True)
        raise ValueError(f"an LwM2M integer is at most 64 bits, got {value}")
    if isinstance(value, float):
        return struct.pack(">d", value)
    if isinstance(value, str):
        return value.encode()
    return value


def encode_tlv(resource_id: int, value: Value) -> bytes:
    """One OMA-TLV "Resource with Value" (LwM2M 1.0 §6.4.3): type byte, 8- or 16-bit
    identifier, length (in the type byte below 8, else 8/16/24 bits), value. Integers are the
    shortest of 1/2/4/8 signed big-endian bytes, floats 8 bytes, booleans one byte."""
    if not 0 <= resource_id <= 0xFFFF:
        raise ValueError(f"a resource id is 0..65535, got {resource_id}")
    data = _tlv_value(value)
    kind = 0b1100_0000
    if resource_id > 0xFF:
        kind |= 0b0010_0000
        ident = resource_id.to_bytes(2, "big")
    else:
        ident = resource_id.to_bytes(1, "big")
    n = len(data)
    if n < 8:
        kind |= n
        length = b""
    elif n < 1 << 8:
        kind |= 0b0000_1000
        length = n.to_bytes(1, "big")
    elif n < 1 << 16:
        kind |= 0b0001_0000
        length = n.to_bytes(2, "big")
    elif n < 1 << 24:
        kind |= 0b0001_1000
        length = n.to_bytes(3, "big")
    else:
        raise ValueError(f"a TLV value is at most 16 MiB, got {n} bytes")
    return bytes([kind]) + ident + length + data


def decode_tlv(data: bytes) -> dict[int, bytes]:
    """The resources of a sequence of "Resource with Value" TLVs: ``{id: value bytes}``.

    Raises ``ValueError`` for a truncated TLV or another TLV type (object instance, multiple
    resource), which a single-resource write does not carry.
    """
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        kind = data[i]
        if kind & 0b1100_0000 != 0b1100_0000:
            raise ValueError(f"TLV type {kind >> 6} at byte {i} is not a resource with value")
        id_len = 2 if kind & 0b0010_0000 else 1
        len_len = (kind >> 3) & 0b11
        head = 1 + id_len + len_len
        if i + head > len(data):
            raise ValueError("truncated TLV header")
        ident = int.from_bytes(data[i + 1 : i + 1 + id_len], "big")
        n = int.from_bytes(data[i + 1 + id_len : i + head], "big") if len_len else kind & 0b111
        if i + head + n > len(data):
            raise ValueError("truncated TLV value")
        out[ident] = data[i + head : i + head + n]
        i += head + n
    return out
