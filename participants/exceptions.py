from audit.exceptions import ApplicationError


class NotEligibleError(ApplicationError):
    """The participant cannot be randomized yet: consent, eligibility or strata are incomplete."""


class AllocationListMissingError(ApplicationError):
    """The unblinded statistician has not generated the trial's allocation list yet."""


class AllocationListExistsError(ApplicationError):
    """An allocation list is generated once; regenerating would break concealment."""


class AllocationExhaustedError(ApplicationError):
    """No free slot is left in the participant's stratum."""


class RandomizationClosedError(ApplicationError):
    """The trial is not recruiting."""


class UnblindingReasonRequiredError(ApplicationError):
    """Emergency unblinding needs a documented reason."""


class ScreeningError(ApplicationError):
    """Screening data are incomplete or inconsistent."""


class RecordLockedError(ApplicationError):
    """The participant's casebook or the whole trial is locked: no data may change until a data manager unlocks."""


class SignatureAuthenticationError(ApplicationError):
    """Signing re-authenticates: the password given was wrong."""


class QueryStateError(ApplicationError):
    """The data query is not in a state that allows this step (e.g. answering a closed query)."""


class ConcurrentEditError(ApplicationError):
    """Someone saved this record after you opened it; ``changes`` maps field → (value you saw, value now)."""

    def __init__(self, message: str, *, changes: dict[str, tuple[object, object]], **context: object) -> None:
        super().__init__(message, **context)
        self.changes = changes


class DataValidationError(ApplicationError):
    """Entered data break a rule; ``errors`` maps each field to what is wrong with it. Nothing was saved."""

    def __init__(self, message: str, *, errors: dict[str, str], **context: object) -> None:
        super().__init__(message, **context)
        self.errors = errors
