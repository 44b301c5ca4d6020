"""The error kinds the harness raises, each mapped to one exit code at the CLI edge.

UsageError is the user's to fix (bad inventory, bad argument): exit 2, one message, no
traceback. DeviceError and AgentError are about a device: in a run they become an
`error` verdict for the case, never a pass or a fail.
"""


class NeighcheckError(Exception):
    exit_code = 1


class UsageError(NeighcheckError):
    """Bad inventory, bad argument or bad environment: the message says what to fix."""

    exit_code = 2


class DeviceError(NeighcheckError):
    """A device could not be reached or could not run what was asked (SSH, timeout, host key)."""


class AgentError(DeviceError):
    """The device-side agent exited non-zero or printed something that is not protocol JSON."""


class SeedingError(NeighcheckError):
    """Seeding did not land what was sent (a shortfall), or was asked to use a forbidden link."""


class LinkNotAllowed(SeedingError, UsageError):
    """Traffic was asked for on an interface that the inventory does not declare as a test link."""

    exit_code = 2
