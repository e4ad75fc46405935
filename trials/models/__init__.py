from trials.models.membership import MembershipSite, Role, TrialMembership
from trials.models.product import ExosomeProduct, LotMarkerResult, ProductLot
from trials.models.protocol import (
    AnalysisPlan,
    EligibilityCriterion,
    Endpoint,
    StratificationFactor,
    VisitDefinition,
)
from trials.models.trial import Arm, Site, Trial

__all__ = [
    "AnalysisPlan",
    "Arm",
    "EligibilityCriterion",
    "Endpoint",
    "ExosomeProduct",
    "LotMarkerResult",
    "MembershipSite",
    "ProductLot",
    "Role",
    "Site",
    "StratificationFactor",
    "Trial",
    "TrialMembership",
    "VisitDefinition",
]
