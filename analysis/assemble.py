"""Assemble report documents (open, closed, final) from computed results. Pure: no database.

The OPEN report carries pooled figures only: it is built from the ``*_pooled`` tables and never from a table
or figure that is split by arm, so no arm code, name or dose can reach it.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from analysis.compute import AnalysisResults, AnalysisSpec
from analysis.report import figures
from analysis.report.document import Figure, ReportDocument, Section, Table


def _table(results: AnalysisResults, key: str, title: str, note: str = "", sheet: str | None = None) -> Table | None:
    frame = results.tables.get(key)
    if frame is None or frame.empty:
        return None
    return Table(key=(sheet or key)[:31], title=title, frame=frame, note=note)


def _section(title: str, paragraphs=(), tables=(), figures_=()) -> Section:
    return Section(
        title=title,
        paragraphs=tuple(paragraphs),
        tables=tuple(t for t in tables if t is not None),
        figures=tuple(f for f in figures_ if f is not None),
    )


def _enrolment_figure(results: AnalysisResults, spec: AnalysisSpec) -> Figure:
    data = results.figure_data["enrolment"]
    return Figure(
        "enrolment",
        "Cumulative randomization against the target",
        lambda: figures.enrolment_plot(data, target=spec.planned_n, title="Randomized participants over time"),
    )


def _consort_figure(results: AnalysisResults, grouped: bool) -> Figure:
    counts = results.figure_data["consort_by_arm" if grouped else "consort_pooled"]
    title = "CONSORT flow by arm" if grouped else "CONSORT flow (pooled)"
    return Figure(
        "consort_by_arm" if grouped else "consort", title, lambda: figures.consort_diagram(counts, title=title)
    )


def _common_sections(results: AnalysisResults, spec: AnalysisSpec, suffix: str) -> list[Section]:
    label = "pooled" if suffix == "pooled" else "by arm"
    return [
        _section(
            "Enrolment and screening",
            [
                f"{results.summary['accrual']['randomized']} participants randomized of "
                f"{spec.planned_n} planned; {results.summary['accrual']['screened']} screened."
            ],
            [
                _table(results, "enrolment_by_site", "Screening and randomization by site"),
                _table(results, "screen_failures", "Screen failures by failed criterion"),
            ],
            [_enrolment_figure(results, spec), _consort_figure(results, grouped=suffix != "pooled")],
        ),
        _section(
            f"Disposition ({label})",
            [],
            [_table(results, f"disposition_{suffix}", f"Participant status at the cut-off ({label})")],
        ),
        _section(
            f"Baseline characteristics ({label})",
            [],
            [_table(results, f"baseline_{suffix}", f"Baseline characteristics ({label})")],
        ),
        _section(
            f"Safety ({label})",
            [
                "Treatment-emergent adverse events in the safety set (all participants dosed), participants with at "
                "least one event, with exact (Clopper–Pearson) 95% confidence intervals."
            ],
            [
                _table(results, f"ae_overview_{suffix}", f"Adverse event overview ({label})"),
                _table(results, f"ae_by_soc_{suffix}", f"Adverse events by system organ class and term ({label})"),
                _table(results, f"ae_by_grade_{suffix}", f"Participants by maximum CTCAE grade ({label})"),
            ],
        ),
        _section(
            "Data completeness and queries",
            [],
            [
                _table(results, "data_completeness", "Primary endpoint completeness by visit"),
                _table(results, "query_status", "Data queries by status"),
            ],
        ),
    ]


def open_report(
    results: AnalysisResults,
    spec: AnalysisSpec,
    *,
    trial_code: str,
    cutoff: dt.date,
    generated_at: dt.datetime,
    provenance: dict[str, str],
) -> ReportDocument:
    """DSMB open session / blinded readers: pooled data only."""
    sections = _common_sections(results, spec, "pooled")
    sections.append(
        _section(
            "Investigational product lots used",
            [],
            [_table(results, "lots_used_pooled", "Administrations by product lot (pooled)")],
        )
    )
    return ReportDocument(
        title=f"{trial_code} interim analysis {spec.look_number} — DSMB open report",
        trial_code=trial_code,
        cutoff=cutoff,
        marking="OPEN",
        generated_at=generated_at,
        provenance=provenance,
        sections=tuple(sections),
    )


def _monitoring_section(results: AnalysisResults, spec: AnalysisSpec) -> Section:
    monitoring = results.summary["monitoring"]
    cp = monitoring["conditional_power"]
    paragraphs = [
        f"Group-sequential monitoring of {spec.primary_paramcd} at {spec.primary_visit}, {spec.monitored_arm} versus "
        f"{spec.reference_arm}, with a Lan–DeMets {monitoring['spending'].upper()}-type alpha-spending function "
        f"(one-sided alpha {spec.alpha}). Information fraction now: {monitoring['information_fraction']:.3f} "
        f"({monitoring['n_with_primary_endpoint']} of {spec.planned_n} participants).",
        f"Conditional power under the current trend: {_pct(cp['current_trend'])}; under the design effect: "
        f"{_pct(cp['design_effect'])}. Non-binding futility rule: conditional power (current trend) below "
        f"{_pct(spec.futility_threshold)}.",
        f"Recommendation from the pre-specified rules: {monitoring['recommendation'].upper()}.",
    ]
    bounds = pd.DataFrame(
        {"fraction": monitoring["recomputed_fractions"], "efficacy_bound": monitoring["recomputed_bounds"]}
    )
    looks = results.figure_data["boundary"]["looks"]
    return _section(
        "Group-sequential monitoring of the primary endpoint",
        paragraphs,
        [
            _table(results, "monitoring", "Looks so far: z-statistic, boundary, nominal p, alpha spent"),
            Table("bounds_recomputed", "Boundaries recomputed for the actual information", bounds),
        ],
        [
            Figure(
                "boundary",
                "Observed z-statistic against the efficacy boundary",
                lambda: figures.boundary_plot(looks, bounds, title="Efficacy boundary and observed path"),
            )
        ],
    )


def _pct(value) -> str:
    return "not defined" if value is None else f"{100 * value:.1f}%"


def _efficacy_sections(results: AnalysisResults, spec: AnalysisSpec) -> list[Section]:
    primary = results.summary["primary"]
    sections = [
        _section(
            "Primary analysis",
            [
                f"ANCOVA of the change from baseline in {primary['paramcd']} at {primary['visit']}, each arm "
                f"versus {spec.reference_arm}, adjusted for {', '.join(primary['covariates'])}; "
                f"{primary['n_analysed']} participants analysed, {primary['n_missing']} without a value at the visit.",
            ],
            [
                _table(results, "primary_ancova", "Primary analysis: ANCOVA contrasts"),
                _table(results, "sensitivity_mmrm", "Sensitivity: mixed model for repeated measures"),
            ],
        )
    ]
    secondary_tables = [
        _table(results, key, f"Key secondary endpoint {key.removeprefix('secondary_')}")
        for key in results.tables
        if key.startswith("secondary_")
    ]
    km_figures = [
        Figure(
            key,
            f"Kaplan–Meier: {key.removeprefix('km_')}",
            (
                lambda curves=curves, key=key: figures.kaplan_meier_plot(
                    curves,
                    title=f"Time to event: {key.removeprefix('km_')}",
                    time_label="Days",
                    at_risk_times=[0, 30, 60, 90, 120, 150, 180],
                )
            ),
        )
        for key, curves in results.figure_data.items()
        if key.startswith("km_")
    ]
    sections.append(
        _section(
            "Key secondary endpoints",
            [
                "Responders: risk difference with Newcombe hybrid-score 95% CI and Fisher's exact p-value. "
                "Time to event: Kaplan–Meier, log-rank test and Cox hazard ratio. Multiplicity: fixed-sequence "
                "testing in the planned order."
            ],
            [*secondary_tables, _table(results, "multiplicity", "Multiplicity adjustment (fixed sequence)")],
            km_figures,
        )
    )
    subgroups = results.figure_data.get("forest")
    if subgroups is not None and not subgroups.empty:
        rows = subgroups.assign(
            label=subgroups["subgroup"] + ": " + subgroups["level"].astype(str),
            n=subgroups["n_treatment"] + subgroups["n_reference"],
        )
        sections.append(
            _section(
                "Subgroups and the exosomal biomarker",
                [
                    "Treatment effect by subgroup, including baseline serum exosomal biomarker high versus low (median "
                    "split); heterogeneity p-value by Cochran's Q."
                ],
                [_table(results, "subgroups", "Subgroup estimates")],
                [
                    Figure(
                        "forest",
                        "Subgroup forest plot",
                        lambda: figures.forest_plot(
                            rows,
                            title=f"{spec.monitored_arm} vs {spec.reference_arm}: change from baseline",
                            effect_label="Difference in change from baseline",
                        ),
                    )
                ],
            )
        )
    dose = results.figure_data.get("dose_response")
    sections.append(
        _section(
            "Exposure and product lots",
            [],
            [_table(results, "exposure_by_lot", "Exposure by arm and product lot")],
            [
                Figure(
                    "dose_response",
                    "Particles given versus response",
                    lambda: figures.scatter_plot(
                        dose[dose["particles"] > 0],
                        x="particles",
                        y="CHG",
                        hue="lot",
                        title="Particle dose versus change from baseline, by lot",
                        xlabel="Particles given",
                        ylabel="Change from baseline",
                        logx=True,
                    ),
                )
            ]
            if dose is not None and (dose["particles"] > 0).any()
            else [],
        )
    )
    return sections


def closed_report(
    results: AnalysisResults,
    spec: AnalysisSpec,
    *,
    trial_code: str,
    cutoff: dt.date,
    generated_at: dt.datetime,
    provenance: dict[str, str],
) -> ReportDocument:
    """DSMB closed session / unblinded statistician: by arm, with the monitoring decision."""
    sections = [
        _monitoring_section(results, spec),
        *_efficacy_sections(results, spec),
        *_common_sections(results, spec, "by_arm"),
    ]
    return ReportDocument(
        title=f"{trial_code} interim analysis {spec.look_number} — DSMB closed report",
        trial_code=trial_code,
        cutoff=cutoff,
        marking="CLOSED",
        generated_at=generated_at,
        provenance=provenance,
        sections=tuple(sections),
    )


def final_report(
    results: AnalysisResults,
    spec: AnalysisSpec,
    *,
    trial_code: str,
    cutoff: dt.date,
    generated_at: dt.datetime,
    provenance: dict[str, str],
) -> ReportDocument:
    sections = [
        *_efficacy_sections(results, spec),
        _monitoring_section(results, spec),
        *_common_sections(results, spec, "by_arm"),
    ]
    return ReportDocument(
        title=f"{trial_code} final analysis",
        trial_code=trial_code,
        cutoff=cutoff,
        marking="FINAL",
        generated_at=generated_at,
        provenance=provenance,
        sections=tuple(sections),
    )
