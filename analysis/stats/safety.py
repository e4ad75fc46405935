"""Adverse-event summaries: incidence by SOC/term, maximum grade, overview, exposure-adjusted rates.

Two inputs throughout:

``participants``
    The safety population, one row per participant: ``participant`` id and ``arm`` columns (names
    configurable), plus an exposure column for exposure-adjusted rates. It supplies the denominators, so
    participants without any adverse event count.
``adverse_events``
    One row per adverse event: ``participant`` id, ``soc`` (MedDRA system organ class), ``term``
    (preferred term), ``grade`` (CTCAE 1-5) and 0/1 (or boolean) flags ``serious``, ``related``,
    ``discontinued`` (led to study-drug discontinuation) and ``fatal``.

A participant is counted once per row of a table however many events they had. Proportions carry an exact
Clopper-Pearson interval (statsmodels ``proportion_confint(method="beta")``); differences between arms use
the Newcombe hybrid score interval from :func:`analysis.stats.efficacy.risk_difference`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from ._validation import apply_missing_policy, check_level, require_columns
from .efficacy import risk_difference

ANY = "(any)"


def _population(participants: pd.DataFrame, participant: str, arm: str) -> pd.DataFrame:
    require_columns(participants, [participant, arm], "participants")
    population = participants[[participant, arm]].copy()
    if population[[participant, arm]].isna().any().any():
        raise ValueError("participants has missing participant ids or arms; the denominators would be wrong")
    if population[participant].duplicated().any():
        raise ValueError(f"participants lists some {participant!r} values more than once")
    if population.empty:
        raise ValueError("participants is empty")
    population[arm] = population[arm].astype(str)
    return population


def _events_with_arm(
    adverse_events: pd.DataFrame,
    population: pd.DataFrame,
    participant: str,
    arm: str,
    columns: Sequence[str],
    missing: str,
) -> tuple[pd.DataFrame, int]:
    events, n_excluded = apply_missing_policy(adverse_events, [participant, *columns], missing, "adverse_events")
    unknown = pd.unique(events.loc[~events[participant].isin(population[participant]), participant])
    if len(unknown):
        raise ValueError(
            f"adverse_events has {len(unknown)} participant id(s) not in participants "
            "(the safety population), "
            f"e.g. {sorted(map(str, unknown))[:5]}"
        )
    merged = events.merge(population, on=participant, how="left", suffixes=("_ae", ""))
    return merged, n_excluded


def _flag(events: pd.DataFrame, column: str) -> pd.Series:
    values = events[column]
    if pd.api.types.is_bool_dtype(values):
        return values
    unique = set(pd.unique(values).tolist())
    if not unique <= {0, 1}:
        raise ValueError(f"adverse_events column {column!r} must be 0/1 or boolean, got {sorted(map(str, unique))}")
    return values.astype(bool)


def _proportion_rows(counts: pd.Series, denominators: pd.Series, level: float) -> pd.DataFrame:
    lower, upper = proportion_confint(counts.to_numpy(), denominators.to_numpy(), alpha=1.0 - level, method="beta")
    return pd.DataFrame(
        {
            "n": counts.to_numpy(dtype=int),
            "N": denominators.to_numpy(dtype=int),
            "percent": 100.0 * counts.to_numpy() / denominators.to_numpy(),
            "ci_lower": np.asarray(lower, dtype=float),
            "ci_upper": np.asarray(upper, dtype=float),
        },
        index=counts.index,
    )


def _incidence(
    participants_with_event: pd.DataFrame, population: pd.DataFrame, participant: str, arm: str, level: float
) -> pd.DataFrame:
    """Participants with at least one event per arm; every arm appears, with 0 where nobody had one."""
    # distinct (arm, participant) pairs counted per arm: groupby().nunique() is several times slower on strings
    denominators = population.drop_duplicates([arm, participant]).groupby(arm).size()
    counts = (
        participants_with_event.drop_duplicates([arm, participant])
        .groupby(arm)
        .size()
        .reindex(denominators.index, fill_value=0)
    )
    table = _proportion_rows(counts, denominators, level)
    table.index.name = "arm"
    return table.reset_index()


def ae_incidence(
    adverse_events: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    participant: str = "participant_id",
    arm: str = "arm",
    soc: str = "soc",
    term: str = "term",
    level: float = 0.95,
    missing: str = "raise",
) -> pd.DataFrame:
    """Participants with >= 1 adverse event overall, by SOC, and by SOC and preferred term, per arm.

    Returns
    -------
    pandas.DataFrame
        Columns ``soc, term, arm, n, N, percent, ci_lower, ci_upper`` (CI as proportions, Clopper-Pearson).
        The overall row has ``soc = term = "(any)"``; SOC rows have ``term = "(any)"``. Rows are sorted by
        SOC and term. ``attrs["n_excluded"]`` counts AE records dropped for missing SOC/term.

    Reference: ICH E3 section 12.2; Clopper CJ, Pearson ES (1934). Biometrika 26:404-413.
    """
    level_value = check_level(level)
    population = _population(participants, participant, arm)
    events, n_excluded = _events_with_arm(adverse_events, population, participant, arm, [soc, term], missing)
    events[soc] = events[soc].astype(str)
    events[term] = events[term].astype(str)
    blocks = []
    overall = _incidence(events, population, participant, arm, level_value)
    blocks.append(overall.assign(soc=ANY, term=ANY))
    for soc_name, soc_events in events.groupby(soc, sort=True):
        blocks.append(_incidence(soc_events, population, participant, arm, level_value).assign(soc=soc_name, term=ANY))
        for term_name, term_events in soc_events.groupby(term, sort=True):
            blocks.append(
                _incidence(term_events, population, participant, arm, level_value).assign(soc=soc_name, term=term_name)
            )
    table = pd.concat(blocks, ignore_index=True)[["soc", "term", "arm", "n", "N", "percent", "ci_lower", "ci_upper"]]
    table.attrs["n_excluded"] = n_excluded
    return table


def ae_by_max_grade(
    adverse_events: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    participant: str = "participant_id",
    arm: str = "arm",
    grade: str = "grade",
    level: float = 0.95,
    missing: str = "raise",
) -> pd.DataFrame:
    """Participants by their maximum CTCAE grade (1-5) per arm; grade 0 = no adverse event.

    Returns columns ``max_grade, arm, n, N, percent, ci_lower, ci_upper``; each participant is counted in
    exactly one grade row, so the n of an arm add up to N.
    """
    level_value = check_level(level)
    population = _population(participants, participant, arm)
    events, n_excluded = _events_with_arm(adverse_events, population, participant, arm, [grade], missing)
    grades = pd.to_numeric(events[grade], errors="coerce")
    if grades.isna().any() or not grades.isin([1, 2, 3, 4, 5]).all():
        raise ValueError(f"adverse_events column {grade!r} must hold CTCAE grades 1-5")
    worst = grades.groupby(events[participant]).max()
    population = population.assign(max_grade=population[participant].map(worst).fillna(0).astype(int))
    denominators = population.groupby(arm)[participant].nunique()
    blocks = []
    for level_grade in range(6):
        counts = (
            population.loc[population["max_grade"] == level_grade]
            .groupby(arm)[participant]
            .nunique()
            .reindex(denominators.index, fill_value=0)
        )
        block = _proportion_rows(counts, denominators, level_value)
        block.index.name = "arm"
        blocks.append(block.reset_index().assign(max_grade=level_grade))
    table = pd.concat(blocks, ignore_index=True)[["max_grade", "arm", "n", "N", "percent", "ci_lower", "ci_upper"]]
    table.attrs["n_excluded"] = n_excluded
    return table


def ae_overview(
    adverse_events: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    reference: str | None = None,
    participant: str = "participant_id",
    arm: str = "arm",
    grade: str = "grade",
    serious: str = "serious",
    related: str = "related",
    discontinued: str = "discontinued",
    fatal: str = "fatal",
    level: float = 0.95,
    missing: str = "raise",
) -> pd.DataFrame:
    """Overview of participants with any AE, grade >= 3, serious, related, leading to discontinuation, fatal.

    Returns
    -------
    pandas.DataFrame
        Columns ``category, arm, n, N, percent, ci_lower, ci_upper`` and, when ``reference`` is given,
        ``risk_difference, rd_ci_lower, rd_ci_upper`` (arm minus reference, Newcombe hybrid score interval;
        NaN on the reference arm's own rows, where no difference is defined).
    """
    level_value = check_level(level)
    population = _population(participants, participant, arm)
    flag_columns = [grade, serious, related, discontinued, fatal]
    events, n_excluded = _events_with_arm(adverse_events, population, participant, arm, flag_columns, missing)
    if reference is not None and reference not in set(population[arm]):
        raise ValueError(f"reference arm {reference!r} not found in participants column {arm!r}")
    grades = pd.to_numeric(events[grade], errors="coerce")
    if grades.isna().any() or not grades.isin([1, 2, 3, 4, 5]).all():
        raise ValueError(f"adverse_events column {grade!r} must hold CTCAE grades 1-5")
    categories = {
        "any adverse event": pd.Series(True, index=events.index),
        "grade >= 3": grades >= 3,
        "serious": _flag(events, serious),
        "related": _flag(events, related),
        "leading to discontinuation": _flag(events, discontinued),
        "fatal": _flag(events, fatal),
    }
    blocks = []
    for name, selected in categories.items():
        block = _incidence(events.loc[selected], population, participant, arm, level_value).assign(category=name)
        if reference is not None:
            reference_row = block.loc[block["arm"] == reference].iloc[0]
            differences = [
                risk_difference(int(row.n), int(row.N), int(reference_row.n), int(reference_row.N), level=level_value)
                if row.arm != reference
                else None
                for row in block.itertuples()
            ]
            block["risk_difference"] = [d.estimate if d else np.nan for d in differences]
            block["rd_ci_lower"] = [d.ci_lower if d else np.nan for d in differences]
            block["rd_ci_upper"] = [d.ci_upper if d else np.nan for d in differences]
        blocks.append(block)
    table = pd.concat(blocks, ignore_index=True)
    leading = ["category", "arm", "n", "N", "percent", "ci_lower", "ci_upper"]
    table = table[leading + [column for column in table.columns if column not in leading]]
    table.attrs["n_excluded"] = n_excluded
    return table


def exposure_adjusted_incidence(
    adverse_events: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    exposure: str = "exposure_years",
    participant: str = "participant_id",
    arm: str = "arm",
    by: Sequence[str] = (),
    per: float = 100.0,
    level: float = 0.95,
    missing: str = "raise",
) -> pd.DataFrame:
    """Exposure-adjusted incidence rate: participants with >= 1 event per ``per`` participant-years.

    Parameters
    ----------
    exposure : str
        Column of ``participants`` with each participant's exposure (years on study drug), > 0.
    by : sequence of str
        Optional AE columns (e.g. ``["term"]``) to tabulate rates within.

    Returns
    -------
    pandas.DataFrame
        Columns ``*by, arm, n, exposure, rate, ci_lower, ci_upper`` with the rate per ``per`` participant-
        years and an exact (Garwood 1936, chi-square based) Poisson interval. The denominator is the total
        exposure of the arm; exposure is not censored at the first event, the usual convention for EAIR
        tables (state it in the report if events are common).
    """
    level_value = check_level(level)
    by_columns = [by] if isinstance(by, str) else list(by)
    population = _population(participants, participant, arm)
    require_columns(participants, [exposure], "participants")
    exposure_values = pd.to_numeric(participants[exposure], errors="coerce")
    if exposure_values.isna().any() or (exposure_values <= 0).any():
        raise ValueError(f"participants column {exposure!r} must be positive for every participant")
    population = population.assign(_exposure=exposure_values.to_numpy())
    events, n_excluded = _events_with_arm(adverse_events, population, participant, arm, by_columns, missing)
    totals = population.groupby(arm)["_exposure"].sum()
    groups = [((), events)] if not by_columns else list(events.groupby(by_columns, sort=True))
    rows = []
    tail = (1.0 - level_value) / 2.0
    for key, group_events in groups:
        counts = group_events.groupby(arm)[participant].nunique().reindex(totals.index, fill_value=0)
        for arm_label, count in counts.items():
            years = float(totals[arm_label])
            lower = 0.0 if count == 0 else stats.chi2.ppf(tail, 2 * count) / 2.0
            upper = stats.chi2.ppf(1.0 - tail, 2 * count + 2) / 2.0
            labels = key if isinstance(key, tuple) else (key,)
            rows.append(
                {
                    **dict(zip(by_columns, labels, strict=True)),
                    "arm": arm_label,
                    "n": int(count),
                    "exposure": years,
                    "rate": per * count / years,
                    "ci_lower": per * lower / years,
                    "ci_upper": per * upper / years,
                }
            )
    table = pd.DataFrame(rows)
    table.attrs["n_excluded"] = n_excluded
    return table
