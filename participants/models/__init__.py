from participants.models.adverse_event import AdverseEvent
from participants.models.data_management import DataQuery, RecordLock, Signature, SourceVerification
from participants.models.deviation import ProtocolDeviation
from participants.models.dosing import DoseAdministration
from participants.models.imports import ImportJob
from participants.models.participant import EligibilityAnswer, Participant
from participants.models.randomization import AllocationList, AllocationSlot, Randomization, UnblindingEvent
from participants.models.visit import OutcomeMeasurement, Visit

__all__ = [
    "AdverseEvent",
    "AllocationList",
    "AllocationSlot",
    "DataQuery",
    "DoseAdministration",
    "EligibilityAnswer",
    "ImportJob",
    "OutcomeMeasurement",
    "Participant",
    "ProtocolDeviation",
    "Randomization",
    "RecordLock",
    "Signature",
    "SourceVerification",
    "UnblindingEvent",
    "Visit",
]
