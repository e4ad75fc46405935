from __future__ import annotations

from audit.exceptions import ApplicationError


class OtpCodeError(ApplicationError):
    """A second-factor code was wrong, reused, or the device is throttled after wrong codes."""


class ReauthenticationError(ApplicationError):
    """Re-entered credentials (password, and the code for an enrolled user) did not match, or are locked out."""
