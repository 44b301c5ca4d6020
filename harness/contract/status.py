"""Status codes: the raw code is kept, named, and normalised to one outcome (DESIGN.md §1).

The one status table of the harness: the cases, the judge and the reports read names and
outcomes from here.
"""

from __future__ import annotations

from enum import Enum


class Outcome(str, Enum):
    SUCCESS = "SUCCESS"
    INVALID_PARAMETER = "INVALID_PARAMETER"
    NOT_SUPPORTED = "NOT_SUPPORTED"
    ACCESS_DENIED = "ACCESS_DENIED"
    OTHER = "OTHER"


SPACES = ("ntstatus", "win32")
# code -> (name, outcome); a code not listed here is OTHER.
STATUS_TABLE: dict[str, dict[int, tuple[str, Outcome]]] = {
    "ntstatus": {
        0x00000000: ("STATUS_SUCCESS", Outcome.SUCCESS),
        0xC0000001: ("STATUS_UNSUCCESSFUL", Outcome.OTHER),
        0xC000000D: ("STATUS_INVALID_PARAMETER", Outcome.INVALID_PARAMETER),
        0xC0000022: ("STATUS_ACCESS_DENIED", Outcome.ACCESS_DENIED),
        0xC00000BB: ("STATUS_NOT_SUPPORTED", Outcome.NOT_SUPPORTED),
        0xC0000225: ("STATUS_NOT_FOUND", Outcome.OTHER),
    },
    "win32": {
        0: ("NO_ERROR", Outcome.SUCCESS),
        1: ("ERROR_INVALID_FUNCTION", Outcome.OTHER),
        2: ("ERROR_FILE_NOT_FOUND", Outcome.OTHER),
        5: ("ERROR_ACCESS_DENIED", Outcome.ACCESS_DENIED),
        50: ("ERROR_NOT_SUPPORTED", Outcome.NOT_SUPPORTED),
        87: ("ERROR_INVALID_PARAMETER", Outcome.INVALID_PARAMETER),
        1168: ("ERROR_NOT_FOUND", Outcome.OTHER),
        5010: ("ERROR_OBJECT_ALREADY_EXISTS", Outcome.OTHER),
    },
}


def _is_int(raw: object) -> bool:
    return isinstance(raw, int) and not isinstance(raw, bool)


def _code(raw: object) -> int | None:
    """The unsigned 32-bit code, or None. A signed 32-bit NTSTATUS (-1073741811) is the same
    code; a number outside 32 bits is no code at all (masking 2**32 would make it SUCCESS)."""
    if not _is_int(raw) or not -(1 << 31) <= raw < (1 << 32):
        return None
    return raw & 0xFFFFFFFF


def space_of(code: int, space: str | None) -> str:
    if space in SPACES:
        return space
    # No space given: NTSTATUS error codes have the severity bits set, Win32 codes are small.
    return "ntstatus" if code & 0xC0000000 else "win32"


def normalise(raw: int | None, space: str | None = None) -> Outcome:
    code = _code(raw)
    if code is None:
        return Outcome.OTHER
    return STATUS_TABLE[space_of(code, space)].get(code, ("", Outcome.OTHER))[1]


def code_name(raw: int, space: str | None = None) -> str:
    """The symbolic name, or "" for a code the table does not know."""
    code = _code(raw)
    return "" if code is None else STATUS_TABLE[space_of(code, space)].get(code, ("", None))[0]


def describe(raw: int | None, space: str | None = None) -> str:
    """'0xC000000D (3221225485) STATUS_INVALID_PARAMETER' style text for reasons and reports."""
    code = _code(raw)
    if code is None:
        return f"{raw} (not a 32-bit status code)" if _is_int(raw) else "no status"
    return f"0x{code:08X} ({code}) {code_name(code, space) or 'unknown code'}"
