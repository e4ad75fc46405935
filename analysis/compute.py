"""From frozen analysis datasets to results: every number of every report is computed here, and only here.

Pure: pandas and ``analysis.stats`` only — no Django, no database. Given the same datasets and the same
``AnalysisSpec`` the results are identical, which is what ``verify_analysis`` checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.stats import descriptive, efficacy, multiplicity, safety, sequential, survival

REQUIRED_DATASETS = ("adsl", "adeff", "adae", "adtte", "adex", "screening", "queries")


@dataclass(frozen=True)
class AnalysisSpec:
    """The statistical analysis plan's parameters for one run (stored with the run's provenance)."""

    kind: str  # "interim" or "final"
    look_number: int | None
    primary_paramcd: str
    primary_visit: str
    lower_is_better: bool
    reference_arm: str  # TRT01P value of the control arm
    monitored_arm: str  # TRT01P value of the comparison monitored group-sequentially
    strata: tuple[str, ...]  # ADSL columns the primary model adjusts for (besides BASE)
    alpha: float
    power: float
    look_fractions: tuple[float, ...]
    spending: str
    hsd_gamma: float | None
    futility_threshold: float | None
    planned_n: int
    key_secondaries: tuple[tuple[str, str, str], ...] = ()  # (PARAMCD, kind, visit) in testing order
    biomarker_paramcd: str | None = None
    previous_looks: tuple[tuple[float, float], ...] = ()  # (fraction, z) of earlier looks
    arm_labels: dict[str, str] = field(default_factory=dict)  # TRT01P → arm name (closed/final reports)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass
class AnalysisResults:
    summary: dict  # results.json
    tables: dict[str, pd.DataFrame]  # every table of the reports, by key
    figure_data: dict[str, object]


def _round(value: float | None, digits: int = 6) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), digits)


def _significant(value: float | None, digits: int = 10) -> float | None:
    """Probabilities keep 10 significant digits (a fixed number of decimals would erase small p-values)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(f"{float(value):.{digits}g}")


def compute(datasets: dict[str, pd.DataFrame], spec: AnalysisSpec) -> AnalysisResults:
    missing = [name for name in REQUIRED_DATASETS if name not in datasets]
    if missing:
        raise ValueError(f"missing analysis datasets: {missing}")
    adsl = datasets["adsl"]
    if adsl.empty:
        raise ValueError("no randomized participant before the data cut-off: nothing to analyse")
    tables: dict[str, pd.DataFrame] = {}
    figures: dict[str, object] = {}
    summary: dict = {"kind": spec.kind, "look_number": spec.look_number}

    primary, primary_frame = _primary(datasets, spec)
    summary["primary"] = primary
    tables["primary_ancova"] = pd.DataFrame(primary["contrasts"])
    summary["monitoring"], tables["monitoring"], figures["boundary"] = _monitoring(primary, primary_frame, spec)

    _pooled_and_by_arm(datasets, spec, tables, figures, summary)
    _secondaries(datasets, spec, tables, figures, summary)
    return AnalysisResults(summary=summary, tables=tables, figure_data=figures)


# ---------------------------------------------------------------------------------------------------------
# Primary endpoint and group-sequential monitoring
# ---------------------------------------------------------------------------------------------------------


def _primary_frame(datasets, spec) -> pd.DataFrame:
    adeff, adsl = datasets["adeff"], datasets["adsl"]
    rows = adeff[(adeff["PARAMCD"] == spec.primary_paramcd) & (adeff["AVISIT"] == spec.primary_visit)]
    frame = rows.merge(adsl[["USUBJID", "TRT01P", *spec.strata]], on="USUBJID")
    return frame[["USUBJID", "TRT01P", "BASE", "CHG", *spec.strata]]


def _primary(datasets, spec) -> tuple[dict, pd.DataFrame]:
    frame = _primary_frame(datasets, spec)
    observed = frame.dropna(subset=["CHG", "BASE"])
    arms = sorted(observed["TRT01P"].unique())
    if spec.reference_arm not in arms or len(arms) < 2:
        raise ValueError(
            f"the primary analysis needs {spec.reference_arm} and at least one other arm with "
            f"{spec.primary_paramcd} at {spec.primary_visit} before the cut-off; found {arms}"
        )
    fit = efficacy.ancova(
        observed, reference=spec.reference_arm, outcome="CHG", arm="TRT01P", baseline="BASE", strata=list(spec.strata)
    )
    contrasts = [
        {
            "arm": c.arm,
            "reference": c.reference,
            "estimate": _round(c.estimate),
            "se": _round(c.se),
            "ci_lower": _round(c.ci_lower),
            "ci_upper": _round(c.ci_upper),
            "pvalue": _significant(c.pvalue),
            "n": c.n,
            "n_reference": c.n_reference,
        }
        for c in fit.contrasts
    ]
    return {
        "paramcd": spec.primary_paramcd,
        "visit": spec.primary_visit,
        "covariates": ["BASE", *spec.strata],
        "method": fit.method,
        "n_analysed": fit.n_used,
        "n_missing": int(len(frame) - len(observed)),
        "contrasts": contrasts,
    }, observed


def _monitoring(primary: dict, observed: pd.DataFrame, spec: AnalysisSpec):
    design = sequential.efficacy_bounds(
        list(spec.look_fractions), alpha=spec.alpha, spending=spec.spending, gamma=spec.hsd_gamma
    )
    contrast = next(c for c in primary["contrasts"] if c["arm"] == spec.monitored_arm)
    sign = -1.0 if spec.lower_is_better else 1.0
    z_now = sign * contrast["estimate"] / contrast["se"]
    fraction_now = 1.0 if spec.kind == "final" else min(len(observed) / spec.planned_n, 1.0)
    previous = [look for look in spec.previous_looks if look[0] < fraction_now]
    fractions = [f for f, _ in previous] + [fraction_now]
    z_values = [z for _, z in previous] + [z_now]
    drift = sequential.design_drift(design, power=spec.power)
    table = sequential.monitoring_summary(
        design,
        z_values,
        fractions,
        design_drift=drift,
        futility_threshold=spec.futility_threshold if spec.futility_threshold is not None else 0.0,
        final=spec.kind == "final",
    )
    last = table.iloc[-1]
    looks = [
        {
            "look": int(row.look),
            "fraction": _round(row.fraction),
            "z_statistic": _round(row.z_statistic),
            "efficacy_bound": _round(row.efficacy_bound),
            "nominal_p": _significant(row.nominal_p),
            "cumulative_alpha": _significant(row.cumulative_alpha),
            "recommendation": row.recommendation,
        }
        for row in table.itertuples()
    ]
    remaining = [f for f in spec.look_fractions if f > fraction_now] if spec.kind != "final" else []
    planned = sequential.recompute_bounds(design, fractions + remaining, final=True)
    bounds = pd.DataFrame({"fraction": fractions + remaining, "efficacy_bound": planned.z})
    monitoring = {
        "comparison": {
            "arm": spec.monitored_arm,
            "reference": spec.reference_arm,
            "z_sign": "positive favours the experimental arm",
        },
        "spending": spec.spending,
        "alpha": spec.alpha,
        "planned_fractions": list(spec.look_fractions),
        "planned_bounds": [_round(z) for z in design.z],
        "recomputed_fractions": [_round(f) for f in fractions + remaining],
        "recomputed_bounds": [_round(z) for z in planned.z],
        "information_fraction": _round(fraction_now),
        "n_with_primary_endpoint": len(observed),
        "planned_n": spec.planned_n,
        "looks": looks,
        "conditional_power": {
            "current_trend": _round(last.conditional_power_trend),
            "design_effect": _round(last.conditional_power_design),
            "design_drift": _round(drift),
        },
        "futility_threshold": spec.futility_threshold,
        "recommendation": str(last.recommendation),
    }
    report_columns = [
        "look",
        "fraction",
        "z_statistic",
        "efficacy_bound",
        "nominal_p",
        "cumulative_alpha",
        "conditional_power_trend",
        "recommendation",
    ]
    return monitoring, table[report_columns], {"looks": table[["fraction", "z_statistic"]], "bounds": bounds}


# ---------------------------------------------------------------------------------------------------------
# Accrual, disposition, baseline, safety, data quality: pooled (open) and by arm (closed/final)
# ---------------------------------------------------------------------------------------------------------


def _pooled_and_by_arm(datasets, spec, tables, figures, summary) -> None:
    adsl, adae, adex = datasets["adsl"], datasets["adae"], datasets["adex"]
    screening, queries = datasets["screening"], datasets["queries"]
    pooled = adsl.assign(GROUP="All participants")
    by_arm = adsl.assign(GROUP=adsl["TRT01P"])

    accrual = adsl.assign(RANDDT=pd.to_datetime(adsl["RANDDT"])).sort_values("RANDDT")
    accrual["randomized"] = np.arange(1, len(accrual) + 1)
    figures["enrolment"] = accrual[["RANDDT", "randomized", "SITEID"]].rename(
        columns={"RANDDT": "date", "SITEID": "site"}
    )
    tables["enrolment_by_site"] = (
        screening.groupby("SITEID")
        .agg(screened=("SUBJID", "count"), screen_failures=("SCRNFL", lambda s: (s == "Y").sum()))
        .join(adsl.groupby("SITEID").size().rename("randomized"))
        .fillna(0)
        .astype(int)
        .reset_index()
    )
    tables["screen_failures"] = (
        screening[screening["SCRNFL"] == "Y"]
        .groupby("SCRNFREAS")
        .size()
        .rename("participants")
        .reset_index()
        .rename(columns={"SCRNFREAS": "reason"})
    )
    for label, frame in (("pooled", pooled), ("by_arm", by_arm)):
        tables[f"disposition_{label}"] = frame.groupby(["GROUP", "EOSSTT"]).size().rename("participants").reset_index()
        tables[f"baseline_{label}"] = _baseline(frame, datasets, spec)
        tables[f"ae_overview_{label}"], tables[f"ae_by_soc_{label}"], tables[f"ae_by_grade_{label}"] = _safety(
            frame, adae, adex
        )
    tables["data_completeness"] = _completeness(datasets, spec)
    tables["query_status"] = (
        queries.groupby("QSTAT").size().rename("queries").reset_index()
        if not queries.empty
        else pd.DataFrame({"QSTAT": [], "queries": []})
    )
    tables["lots_used_pooled"] = (
        adex.groupby("EXLOT").agg(administrations=("USUBJID", "count")).reset_index().rename(columns={"EXLOT": "lot"})
    )
    tables["exposure_by_lot"] = (
        adex.groupby(["EXTRT", "EXLOT"])
        .agg(participants=("USUBJID", "nunique"), mean_particles=("EXDOSE", "mean"), mean_volume_ml=("EXVOL", "mean"))
        .reset_index()
        .rename(columns={"EXTRT": "arm", "EXLOT": "lot"})
    )
    figures["consort_pooled"] = consort_flow(datasets, grouped=False)
    figures["consort_by_arm"] = consort_flow(datasets, grouped=True)
    summary["accrual"] = {"screened": len(screening), "randomized": len(adsl), "planned_n": spec.planned_n}


def _baseline(frame: pd.DataFrame, datasets, spec) -> pd.DataFrame:
    adeff = datasets["adeff"]
    base = adeff[
        (adeff["PARAMCD"] == spec.primary_paramcd)
        & (adeff["AVISITN"] == adeff.groupby("USUBJID")["AVISITN"].transform("min"))
    ][["USUBJID", "AVAL"]].rename(columns={"AVAL": "BASELINE_" + spec.primary_paramcd})
    data = frame.merge(base, on="USUBJID", how="left")
    return descriptive.baseline_table(
        data,
        arm="GROUP",
        continuous=["AGE", "BASELINE_" + spec.primary_paramcd],
        categorical=["SEX", "SITEID", *[s for s in spec.strata if s != "SITEID"]],
        overall=False,
    )


def _safety(frame: pd.DataFrame, adae: pd.DataFrame, adex: pd.DataFrame):
    participants = frame[frame["SAFFL"] == "Y"][["USUBJID", "GROUP"]].rename(
        columns={"USUBJID": "participant_id", "GROUP": "arm"}
    )
    events = adae[adae["TRTEMFL"] == "Y"].rename(
        columns={"USUBJID": "participant_id", "AEBODSYS": "soc", "AEDECOD": "term", "AETOXGR": "grade"}
    )
    events = events[events["participant_id"].isin(participants["participant_id"])].assign(
        serious=events["AESER"] == "Y",
        related=events["AEREL"] == "Y",
        discontinued=events["AEACN"] == "withdrawn",
        fatal=events["AESDTH"] == "Y",
    )
    columns = ["participant_id", "soc", "term", "grade", "serious", "related", "discontinued", "fatal"]
    events = events[columns]
    overview = safety.ae_overview(events, participants)
    by_soc = safety.ae_incidence(events, participants)
    by_grade = safety.ae_by_max_grade(events, participants)
    return overview, by_soc, by_grade


def _completeness(datasets, spec) -> pd.DataFrame:
    adeff = datasets["adeff"]
    primary = adeff[adeff["PARAMCD"] == spec.primary_paramcd]
    table = primary.groupby(["AVISITN", "AVISIT"]).agg(
        records=("USUBJID", "count"), with_value=("ANL01FL", lambda s: (s == "Y").sum())
    )
    table["percent_complete"] = 100.0 * table["with_value"] / table["records"]
    return table.reset_index().drop(columns=["AVISITN"]).rename(columns={"AVISIT": "visit"})


def consort_flow(datasets, *, grouped: bool) -> dict:
    """The CONSORT 2010 flow counts of a freeze: assessed, excluded (by reason), randomized, then per arm (or pooled
    as "All participants") allocated, received the allocated intervention, lost to follow-up, discontinued (by
    reason) and analysed (ITT: every randomized participant)."""
    adsl, screening = datasets["adsl"], datasets["screening"]
    failures = screening[screening["SCRNFL"] == "Y"]["SCRNFREAS"].value_counts().to_dict()
    failed = int((screening["SCRNFL"] == "Y").sum())
    # screened, eligible, but not (yet) randomized at the cut-off: awaiting randomization or lost before it
    not_randomized_other = int(len(screening) - failed - len(adsl))
    groups = adsl["TRT01P"] if grouped else pd.Series("All participants", index=adsl.index)
    flow: dict[str, dict] = {
        key: {} for key in ("allocated", "received", "lost_to_follow_up", "discontinued", "analysed")
    }
    for name, members in adsl.groupby(groups):
        group = str(name)
        stopped = members[members["EOSSTT"] == "DISCONTINUED"]
        lost = stopped["DCSREAS"] == "LOST_TO_FOLLOW_UP"
        flow["allocated"][group] = len(members)
        flow["received"][group] = int((members["SAFFL"] == "Y").sum())
        flow["lost_to_follow_up"][group] = int(lost.sum())
        flow["discontinued"][group] = {str(k): int(v) for k, v in stopped[~lost]["DCSREAS"].value_counts().items()}
        flow["analysed"][group] = int((members["ITTFL"] == "Y").sum())
    excluded = {str(k): int(v) for k, v in failures.items()}
    if not_randomized_other > 0:
        excluded["Eligible, not randomized by the cut-off"] = not_randomized_other
    return {"assessed": len(screening), "excluded": excluded, "randomized": len(adsl), **flow}


# ---------------------------------------------------------------------------------------------------------
# Secondary endpoints, sensitivity and subgroups
# ---------------------------------------------------------------------------------------------------------


def _secondaries(datasets, spec, tables, figures, summary) -> None:
    adsl, adeff, adtte = datasets["adsl"], datasets["adeff"], datasets["adtte"]
    pvalues = []
    secondary_summary = []
    for paramcd, kind, visit in spec.key_secondaries:
        if kind == "binary":
            rows = adeff[(adeff["PARAMCD"] == paramcd) & (adeff["AVISIT"] == visit) & (adeff["ANL01FL"] == "Y")]
            data = rows.merge(adsl[["USUBJID", "TRT01P"]], on="USUBJID")
            result_rows = []
            for arm in sorted(set(data["TRT01P"]) - {spec.reference_arm}):
                x1 = int(data[(data["TRT01P"] == arm)]["AVAL"].sum())
                n1 = int((data["TRT01P"] == arm).sum())
                x2 = int(data[data["TRT01P"] == spec.reference_arm]["AVAL"].sum())
                n2 = int((data["TRT01P"] == spec.reference_arm).sum())
                if min(n1, n2) == 0:
                    continue
                difference = efficacy.risk_difference(x1, n1, x2, n2)
                result_rows.append(
                    {
                        "parameter": paramcd,
                        "arm": arm,
                        "reference": spec.reference_arm,
                        "responders": x1,
                        "n": n1,
                        "reference_responders": x2,
                        "reference_n": n2,
                        "risk_difference": difference.estimate,
                        "ci_lower": difference.ci_lower,
                        "ci_upper": difference.ci_upper,
                        "pvalue": efficacy.fisher_exact_pvalue(x1, n1, x2, n2),
                    }
                )
            table = pd.DataFrame(result_rows)
        elif kind == "time_to_event":
            rows = adtte[adtte["PARAMCD"] == paramcd].merge(adsl[["USUBJID", "TRT01P"]], on="USUBJID")
            curves = {}
            for arm, group in rows.groupby("TRT01P"):
                curves[str(arm)] = survival.kaplan_meier(group["AVAL"], 1 - group["CNSR"])
            figures[f"km_{paramcd}"] = curves
            result_rows = []
            logrank = survival.logrank_test(rows["AVAL"], 1 - rows["CNSR"], rows["TRT01P"])
            for arm in sorted(set(rows["TRT01P"]) - {spec.reference_arm}):
                pair = rows[rows["TRT01P"].isin([arm, spec.reference_arm])]
                hazard = survival.cox_hazard_ratio(
                    pair["AVAL"], 1 - pair["CNSR"], pair["TRT01P"], reference=spec.reference_arm
                )
                median = survival.median_survival(
                    pair[pair["TRT01P"] == arm]["AVAL"], 1 - pair[pair["TRT01P"] == arm]["CNSR"]
                )
                result_rows.append(
                    {
                        "parameter": paramcd,
                        "arm": arm,
                        "reference": spec.reference_arm,
                        "median": median,
                        "hazard_ratio": hazard.hazard_ratio,
                        "ci_lower": hazard.ci_lower,
                        "ci_upper": hazard.ci_upper,
                        "pvalue": hazard.pvalue,
                        "logrank_chisq_all_arms": logrank.statistic,
                        "logrank_p_all_arms": logrank.pvalue,
                    }
                )
            table = pd.DataFrame(result_rows)
        else:
            continue
        tables[f"secondary_{paramcd}"] = table
        monitored = table[table["arm"] == spec.monitored_arm] if not table.empty else table
        if not monitored.empty:
            pvalues.append((paramcd, float(monitored["pvalue"].iloc[0])))
            secondary_summary.append({key: _json(value) for key, value in monitored.iloc[0].to_dict().items()})
    if pvalues:
        adjusted = multiplicity.adjust_pvalues([p for _, p in pvalues], "fixed_sequence", alpha=2 * spec.alpha)
        tables["multiplicity"] = pd.DataFrame(
            {
                "parameter": [name for name, _ in pvalues],
                "raw_pvalue": adjusted.raw,
                "adjusted_pvalue": adjusted.adjusted,
                "rejected": adjusted.rejected,
            }
        )
    summary["key_secondaries"] = secondary_summary
    tables["sensitivity_mmrm"] = _mmrm(datasets, spec)
    tables["subgroups"], figures["forest"] = _subgroups(datasets, spec)
    figures["dose_response"] = _dose_response(datasets, spec)


def _json(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return _significant(float(value))
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _mmrm(datasets, spec) -> pd.DataFrame:
    adeff, adsl = datasets["adeff"], datasets["adsl"]
    post = adeff[(adeff["PARAMCD"] == spec.primary_paramcd) & adeff["CHG"].notna()]
    data = post.merge(adsl[["USUBJID", "TRT01P", *spec.strata]], on="USUBJID")
    if data["AVISIT"].nunique() < 2:
        return pd.DataFrame()
    fit = efficacy.mixed_model_repeated_measures(
        data,
        reference=spec.reference_arm,
        primary_visit=spec.primary_visit,
        participant="USUBJID",
        visit="AVISIT",
        arm="TRT01P",
        value="AVAL",
        baseline="BASE",
        strata=list(spec.strata),
    )
    return fit.to_frame()


def _subgroups(datasets, spec):
    frame = _primary_frame(datasets, spec).dropna(subset=["CHG"])
    frame = frame[frame["TRT01P"].isin([spec.monitored_arm, spec.reference_arm])]
    adsl = datasets["adsl"]
    frame = frame.merge(adsl[["USUBJID", "SEX"]], on="USUBJID")
    subgroups = ["SEX", *spec.strata]
    if spec.biomarker_paramcd:
        adeff = datasets["adeff"]
        base = adeff[adeff["PARAMCD"] == spec.biomarker_paramcd].dropna(subset=["BASE"]).drop_duplicates("USUBJID")
        median = base["BASE"].median()
        level = base.set_index("USUBJID")["BASE"].gt(median).map({True: "high", False: "low"})
        frame["BIOMARKER"] = frame["USUBJID"].map(level)
        frame = frame.dropna(subset=["BIOMARKER"])
        subgroups.append("BIOMARKER")
    table = descriptive.subgroup_estimates(
        frame,
        outcome="CHG",
        subgroups=subgroups,
        treatment=spec.monitored_arm,
        reference=spec.reference_arm,
        arm="TRT01P",
    )
    return table, table


def _dose_response(datasets, spec) -> pd.DataFrame:
    frame = _primary_frame(datasets, spec).dropna(subset=["CHG"])
    doses = datasets["adex"].groupby("USUBJID").agg(particles=("EXDOSE", "sum"), lot=("EXLOT", "first"))
    return frame.merge(doses, left_on="USUBJID", right_index=True)[["USUBJID", "TRT01P", "lot", "particles", "CHG"]]
