"""The unblinded statistician's randomization pages: the concealed list, the balance report, simulations."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from audit.exceptions import ApplicationError
from participants.allocation import simulate_scheme
from participants.models import AllocationList
from participants.services.randomization import (
    allocation_list_generate,
    randomization_balance,
    stratification_factors,
)
from trials.policies.access import Capability
from trials.selectors import trial_get_for

MAX_SIMULATED_TRIALS = 5000


@login_required
@require_http_methods(["GET", "POST"])
def allocation_overview(request, code: str):
    trial = trial_get_for(request.user, code, Capability.MANAGE_ALLOCATION)
    allocation = AllocationList.objects.filter(trial=trial).select_related("generated_by").first()
    if request.method == "POST" and allocation is None:
        try:
            allocation_list_generate(trial=trial, user=request.user)
        except ApplicationError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, "Allocation list generated and concealed.")
        return redirect("allocation:overview", code=trial.protocol_code)
    return render(
        request,
        "participants/allocation.html",
        {"trial": trial, "allocation": allocation, "factors": stratification_factors(trial)},
    )


@login_required
def allocation_balance(request, code: str):
    trial = trial_get_for(request.user, code, Capability.MANAGE_ALLOCATION)
    arm_codes, rows = randomization_balance(trial=trial, user=request.user)
    return render(request, "participants/balance.html", {"trial": trial, "arm_codes": arm_codes, "rows": rows})


class SimulationForm(forms.Form):
    scheme = forms.ChoiceField(choices=AllocationList.Scheme.choices)
    n_participants = forms.IntegerField(label="Participants per simulated trial", min_value=6, max_value=5000)
    n_trials = forms.IntegerField(label="Simulated trials", min_value=10, max_value=MAX_SIMULATED_TRIALS, initial=1000)
    seed = forms.IntegerField(min_value=0, initial=2026)
    probability = forms.FloatField(
        label="Minimization: probability of the preferred arm", min_value=0.51, max_value=1.0, initial=0.8
    )


@login_required
def allocation_simulate(request, code: str):
    trial = trial_get_for(request.user, code, Capability.MANAGE_ALLOCATION)
    plan = trial.analysis_plan
    form = SimulationForm(
        request.GET or None,
        initial={
            "scheme": plan.randomization_scheme,
            "n_participants": trial.target_enrollment,
            "probability": plan.minimization_probability,
        },
    )
    result = None
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        result = simulate_scheme(
            scheme=data["scheme"],
            arm_weights=[(arm.code, arm.allocation_weight) for arm in trial.arms.order_by("code")],
            strata_mix=_strata_mix(trial),
            n_participants=data["n_participants"],
            n_trials=data["n_trials"],
            seed=data["seed"],
            block_multiples=tuple(plan.block_size_multiples or [1]),
            probability=data["probability"],
        )
    context = {"trial": trial, "form": form, "result": result}
    if result is not None:
        context["stratum_rows"] = _rows(result.stratum_imbalance)
        context["factor_rows"] = _rows(result.factor_imbalance)
    return render(request, "participants/simulate.html", context)


def _rows(table) -> list[tuple]:
    return list(table[["expected_n", "mean_imbalance", "p95_imbalance"]].itertuples(index=True, name=None))


def _strata_mix(trial) -> dict[str, dict[str, float]]:
    """Site shares from the sites' enrolment targets (equal if unset); other factors' levels equally likely."""
    mix: dict[str, dict[str, float]] = {}
    for code, levels in stratification_factors(trial):
        if code == "site":
            targets = dict(trial.sites.filter(code__in=levels).values_list("code", "target_enrollment"))
            weights = {level: float(targets.get(level) or 1) for level in levels}
        else:
            weights = dict.fromkeys(levels, 1.0)
        total = sum(weights.values())
        mix[code] = {level: weight / total for level, weight in weights.items()}
    return mix
