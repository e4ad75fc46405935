from participants.models.adverse_event import AdverseEvent
from participants.models.deviation import ProtocolDeviation
from participants.models.dosing import DoseAdministration
from participants.models.participant import EligibilityAnswer, Participant
from participants.models.randomization import Randomization
from participants.models.visit import OutcomeMeasurement, Visit

__all__ = [
    "AdverseEvent",
    "DoseAdministration",
    "EligibilityAnswer",
    "OutcomeMeasurement",
    "Participant",
    "ProtocolDeviation",
    "Randomization",
    "Visit",
]
