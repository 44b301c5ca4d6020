"""Status codes: raw codes are kept, and normalised to one outcome (DESIGN.md §1)."""

from __future__ import annotations

from enum import Enum


class Outcome(str, Enum):
    SUCCESS = "SUCCESS"
    INVALID_PARAMETER = "INVALID_PARAMETER"
    NOT_SUPPORTED = "NOT_SUPPORTED"
    ACCESS_DENIED = "ACCESS_DENIED"
    OTHER = "OTHER"


NTSTATUS_NAMES = {
    0x00000000: "STATUS_SUCCESS",
    0xC0000001: "STATUS_UNSUCCESSFUL",
    0xC000000D: "STATUS_INVALID_PARAMETER",
    0xC0000022: "STATUS_ACCESS_DENIED",
    0xC00000BB: "STATUS_NOT_SUPPORTED",
    0xC0000225: "STATUS_NOT_FOUND",
}
WIN32_NAMES = {
    0: "NO_ERROR",
    1: "ERROR_INVALID_FUNCTION",
    2: "ERROR_FILE_NOT_FOUND",
    5: "ERROR_ACCESS_DENIED",
    50: "ERROR_NOT_SUPPORTED",
    87: "ERROR_INVALID_PARAMETER",
    1168: "ERROR_NOT_FOUND",
}
_NTSTATUS_OUTCOMES = {
    0x00000000: Outcome.SUCCESS,
    0xC000000D: Outcome.INVALID_PARAMETER,
    0xC00000BB: Outcome.NOT_SUPPORTED,
    0xC0000022: Outcome.ACCESS_DENIED,
}
_WIN32_OUTCOMES = {
    0: Outcome.SUCCESS,
    87: Outcome.INVALID_PARAMETER,
    50: Outcome.NOT_SUPPORTED,
    5: Outcome.ACCESS_DENIED,
}
SPACES = ("ntstatus", "win32")


def _space(raw: int, space: str | None) -> str:
    if space in SPACES:
        return space
    # No space given: NTSTATUS error codes have the severity bits set, Win32 codes are small.
    return "ntstatus" if raw & 0xC0000000 else "win32"


def normalise(raw: int | None, space: str | None = None) -> Outcome:
    if raw is None or isinstance(raw, bool) or not isinstance(raw, int):
        return Outcome.OTHER
    code = raw & 0xFFFFFFFF  # a signed 32-bit NTSTATUS (-1073741811) is the same code
    table = _NTSTATUS_OUTCOMES if _space(code, space) == "ntstatus" else _WIN32_OUTCOMES
    return table.get(code, Outcome.OTHER)


def describe(raw: int | None, space: str | None = None) -> str:
    """'0xC000000D STATUS_INVALID_PARAMETER' style text for reports."""
    if raw is None or isinstance(raw, bool) or not isinstance(raw, int):
        return "no status"
    code = raw & 0xFFFFFFFF
    names = NTSTATUS_NAMES if _space(code, space) == "ntstatus" else WIN32_NAMES
    name = names.get(code, "unknown code")
    return f"0x{code:08X} ({code}) {name}"
