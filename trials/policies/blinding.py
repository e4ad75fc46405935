"""Blinding: who may learn treatment assignment, and which fields reveal it.

In a blinded trial only the unblinded statistician and DSMB members see assignments; in an open-label
trial every member does. A site investigator who performs an emergency unblinding sees that one
participant's assignment and no other. Everyone else sees a randomization number instead of an arm.
"""

from __future__ import annotations

from trials.models import Trial
from trials.policies.access import UNBLINDED_ROLES, role

# Fields that reveal the arm directly or through the dose, per model label. The admin, audit trail views,
# exports and API serializers hide these for blinded users.
ALLOCATION_FIELDS: dict[str, frozenset[str]] = {
    "participants.randomization": frozenset({"arm", "arm_id"}),
    "participants.allocationslot": frozenset({"arm", "arm_id"}),
    "participants.doseadministration": frozenset(
        {"lot", "lot_id", "volume_ml", "particles_given", "notes", "administered_by"}
    ),
    "trials.arm": frozenset(
        {
            "code",
            "name",
            "dose_particles",
            "dose_protein_ug",
            "description",
            "product",
            "product_id",
            "role",
            "schedule",
        }
    ),
}


def sees_allocation(user, trial: Trial) -> bool:
    """May ``user`` see every participant's treatment assignment in ``trial``?"""
    current = role(user, trial)
    if current is None:
        return False
    return not trial.is_blinded or current in UNBLINDED_ROLES


def sees_arm_definitions(user, trial: Trial) -> bool:
    """Arm names and doses: while a trial is being planned its coordinator sets them up; after go-live
    they are treatment information like the assignments themselves."""
    return sees_allocation(user, trial) or (trial.status == Trial.Status.PLANNING and role(user, trial) is not None)


def sees_participant_allocation(user, participant) -> bool:
    """Trial-wide unblinded roles, or the investigator who emergency-unblinded this participant."""
    trial = participant.trial
    if sees_allocation(user, trial):
        return True
    from participants.models import UnblindingEvent

    return (
        role(user, trial) is not None
        and UnblindingEvent.objects.filter(participant=participant, requested_by=user).exists()
    )


def hidden_fields(user, trial: Trial | None, model_label: str) -> frozenset[str]:
    """Fields of ``model_label`` to hide from ``user``; all of them when the trial is unknown."""
    fields = ALLOCATION_FIELDS.get(model_label, frozenset())
    if not fields or (trial is not None and sees_allocation(user, trial)):
        return frozenset()
    return fields
