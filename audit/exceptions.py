class ApplicationError(Exception):
    """Base of every domain error: carries a human message and the context needed to act on it."""

    def __init__(self, message: str, *, field: str | None = None, **context: object) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.context = context


class ReasonForChangeRequiredError(ApplicationError):
    """Existing clinical data may only be changed or deleted with a documented reason (ALCOA+, Part 11)."""
