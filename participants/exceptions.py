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
