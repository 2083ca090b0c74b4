"""The class of a machine-check error, from the MCA error code of an MCi_STATUS value.

The low 16 bits of a bank's status are the architectural error code
(Intel SDM vol. 3B, "Interpreting the MCA Error Codes"; AMD's are laid out
the same way). The class names what kind of hardware failed without the
addresses and counters that differ between two reports of the same fault.
Pure.
"""

from __future__ import annotations

_SIMPLE = {
    0x0000: "no error",
    0x0001: "unclassified error",
    0x0002: "microcode ROM parity error",
    0x0003: "external error",
    0x0004: "FRC error",
    0x0005: "internal parity error",
    0x0006: "SMM handler code access violation",
}
_LEVELS = ("L0", "L1", "L2", "generic level")
_REQUESTS = {
    0: "generic",
    1: "read",
    2: "write",
    3: "data read",
    4: "data write",
    5: "instruction fetch",
    6: "prefetch",
    7: "eviction",
    8: "snoop",
}
_MEMORY_OPS = ("generic", "read", "write", "address/command", "scrubbing")
_FILTER_BIT = 1 << 12  # "corrected error filtering": not part of the class


def mce_class(status: int) -> str:
    code = status & 0xFFFF
    if code in _SIMPLE:
        return _SIMPLE[code]
    if code & 0xFC00 == 0x0400:
        return "internal timer error" if code == 0x0400 else "internal unclassified error"
    code &= ~_FILTER_BIT
    level = _LEVELS[code & 0b11]
    if code & 0xFFFC == 0x000C:
        return f"{level} cache hierarchy error"
    if code & 0xFFF0 == 0x0010:
        return f"{level} TLB error"
    if code & 0xFF80 == 0x0080:
        operation = (code >> 4) & 0b111
        name = _MEMORY_OPS[operation] if operation < len(_MEMORY_OPS) else "memory"
        return f"memory controller {name} error"
    if code & 0xFF00 == 0x0100:
        request = _REQUESTS.get((code >> 4) & 0xF, "unknown")
        return f"{level} cache {request} error"
    if code & 0xF800 == 0x0800:
        request = _REQUESTS.get((code >> 4) & 0xF, "unknown")
        return f"bus {request} error"
    return f"error code {code:#06x}"
