"""Site data-entry forms. They parse and present input; the rules live in the services, whose errors are
shown next to the fields they name (``apply_errors``)."""

from __future__ import annotations

from django import forms
from django.utils import timezone

from participants.meddra import SOC_CHOICES
from participants.models import AdverseEvent, Participant
from participants.services.visits import MeasurementInput, field_name
from trials.models import Arm, Endpoint

DATE_WIDGET = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
DATETIME_WIDGET = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
YES_NO = [("", "—"), ("yes", "Yes"), ("no", "No")]


def apply_errors(form: forms.Form, errors: dict[str, str]) -> None:
    """Put a service's field errors on the form (unknown fields become form-wide errors)."""
    for name, message in errors.items():
        form.add_error(name if name in form.fields else None, message)


class ReasonMixin(forms.Form):
    """Editing saved data: the version read (optimistic concurrency) and the reason for change."""

    version = forms.IntegerField(widget=forms.HiddenInput)
    reason = forms.CharField(
        label="Reason for change",
        max_length=300,
        help_text="Stored in the audit trail with your name and the time, e.g. "
        "'transcription error, corrected from source'.",
    )


class ScreeningForm(forms.Form):
    site = forms.ModelChoiceField(queryset=None, empty_label=None)
    screened_on = forms.DateField(label="Screening date", widget=DATE_WIDGET, initial=timezone.localdate)
    sex = forms.ChoiceField(choices=Participant.Sex.choices)
    birth_year = forms.IntegerField(min_value=1900, max_value=2100)

    def __init__(self, *args, sites, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["site"].queryset = sites


class EligibilityForm(forms.Form):
    consent_date = forms.DateField(label="Date of informed consent", widget=DATE_WIDGET, required=False)
    consent_version = forms.CharField(label="Consent form version", max_length=20, required=False)

    def __init__(self, *args, criteria, factors, **kwargs):
        super().__init__(*args, **kwargs)
        self.criteria = list(criteria)
        for criterion in self.criteria:
            self.fields[f"criterion_{criterion.pk}"] = forms.ChoiceField(
                label=f"{criterion.code} ({criterion.get_kind_display().lower()}): {criterion.text}",
                choices=YES_NO,
                widget=forms.RadioSelect,
            )
        self.factor_codes = []
        for factor in factors:
            self.factor_codes.append(factor.code)
            self.fields[f"strata.{factor.code}"] = forms.ChoiceField(
                label=factor.name, choices=[("", "—"), *[(level, level) for level in factor.levels]], required=False
            )

    def answers(self) -> dict[int, bool]:
        return {
            c.pk: self.cleaned_data[f"criterion_{c.pk}"] == "yes"
            for c in self.criteria
            if self.cleaned_data.get(f"criterion_{c.pk}")
        }

    def strata(self) -> dict[str, str]:
        return {code: self.cleaned_data.get(f"strata.{code}") or "" for code in self.factor_codes}


class VisitForm(forms.Form):
    """Generated from the protocol: one field per endpoint measured at the visit, with its unit and range."""

    visit_date = forms.DateField(widget=DATE_WIDGET)

    def __init__(self, *args, endpoints, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.endpoints = list(endpoints)
        for endpoint in self.endpoints:
            name = field_name(endpoint)
            help_parts = [part for part in (endpoint.unit, _range_text(endpoint)) if part]
            label = endpoint.name
            if endpoint.kind == Endpoint.Kind.BINARY:
                field = forms.TypedChoiceField(
                    label=label,
                    choices=[("", "—"), ("1", "Yes"), ("0", "No")],
                    coerce=float,
                    empty_value=None,
                    required=False,
                )
            elif endpoint.kind in (Endpoint.Kind.COUNT, Endpoint.Kind.ORDINAL):
                field = forms.IntegerField(label=label, required=False)
            else:
                field = forms.FloatField(
                    label=label, required=False, widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"})
                )
            field.help_text = " · ".join(help_parts)
            self.fields[name] = field
            if endpoint.kind == Endpoint.Kind.TIME_TO_EVENT:
                self.fields[f"{name}_event"] = forms.TypedChoiceField(
                    label="Event occurred",
                    choices=[("", "—"), ("1", "Yes, event"), ("0", "No (censored)")],
                    coerce=lambda value: value == "1",
                    empty_value=None,
                    required=False,
                )
            self.fields[f"{name}_not_done"] = forms.CharField(label="Not done because", required=False, max_length=300)
        if editing:
            self.fields["version"] = forms.IntegerField(widget=forms.HiddenInput)
            self.fields["reason"] = ReasonMixin.base_fields["reason"]

    def rows(self):
        """Endpoint rows for the template: the value field, its event and not-done fields."""
        for endpoint in self.endpoints:
            name = field_name(endpoint)
            yield (
                endpoint,
                self[name],
                self[f"{name}_event"] if f"{name}_event" in self.fields else None,
                self[f"{name}_not_done"],
            )

    def measurements(self) -> dict[int, MeasurementInput]:
        entries = {}
        for endpoint in self.endpoints:
            name = field_name(endpoint)
            value = self.cleaned_data.get(name)
            entries[endpoint.pk] = MeasurementInput(
                value=float(value) if value is not None else None,
                event=self.cleaned_data.get(f"{name}_event"),
                not_done_reason=self.cleaned_data.get(f"{name}_not_done") or "",
            )
        return entries


def _range_text(endpoint: Endpoint) -> str:
    if endpoint.kind == Endpoint.Kind.BINARY:
        return ""
    if endpoint.min_value is not None and endpoint.max_value is not None:
        return f"allowed {endpoint.min_value:g}–{endpoint.max_value:g}"
    return ""


class AdverseEventForm(forms.ModelForm):
    soc = forms.ChoiceField(label="MedDRA system organ class", choices=[("", "—"), *SOC_CHOICES])
    expected = forms.TypedChoiceField(
        label="Expected (listed in the reference safety information)",
        choices=YES_NO,
        widget=forms.RadioSelect,
        coerce=lambda value: value == "yes",
        empty_value=None,
    )

    class Meta:
        model = AdverseEvent
        fields = [
            "term",
            "soc",
            "onset_date",
            "stop_date",
            "grade",
            "results_in_death",
            "life_threatening",
            "hospitalization",
            "disability",
            "congenital_anomaly",
            "important_medical_event",
            "causality",
            "expected",
            "action_taken",
            "outcome",
            "site_aware_at",
        ]
        widgets = {"onset_date": DATE_WIDGET, "stop_date": DATE_WIDGET, "site_aware_at": DATETIME_WIDGET}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["site_aware_at"].input_formats = ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
        if self.instance.pk:
            self.initial["expected"] = "yes" if self.instance.expected else "no"

    def _post_clean(self):
        # The model's constraints are checked by the service, with messages a nurse can act on.
        return


class AdverseEventEditForm(AdverseEventForm):
    version = forms.IntegerField(widget=forms.HiddenInput)
    reason = ReasonMixin.base_fields["reason"]


class DoseForm(forms.Form):
    lot_number = forms.CharField(
        label="Lot number",
        max_length=40,
        help_text="Scan the vial's barcode or type the lot number.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "autofocus": True}),
    )
    volume_ml = forms.FloatField(
        label="Volume of product given (mL)", min_value=0.001, widget=forms.NumberInput(attrs={"step": "any"})
    )
    administered_at = forms.DateTimeField(
        label="Given at", widget=DATETIME_WIDGET, input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
    )
    route = forms.ChoiceField(choices=Arm.Route.choices)


class QueryForm(forms.Form):
    target = forms.CharField(widget=forms.HiddenInput)
    field_name = forms.CharField(widget=forms.HiddenInput)
    message = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), label="Query")


class AnswerForm(forms.Form):
    answer = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))


class SignForm(forms.Form):
    meaning = forms.ChoiceField(
        choices=[("approval", "I approve the data as accurate"), ("review", "I have reviewed the data")],
        widget=forms.RadioSelect,
        initial="approval",
    )
    password = forms.CharField(widget=forms.PasswordInput, help_text="Re-enter your password to sign.")
    otp_code = forms.CharField(
        label="Authenticator code",
        required=False,
        max_length=16,
        help_text="The code your authenticator app shows now.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    def __init__(self, *args, asks_otp_code: bool, **kwargs):
        super().__init__(*args, **kwargs)
        if asks_otp_code:
            self.fields["otp_code"].required = True
        else:
            del self.fields["otp_code"]


class LockForm(forms.Form):
    reason = forms.CharField(max_length=300)


class MissedVisitForm(forms.Form):
    missed_reason = forms.CharField(label="Why was the visit missed?", max_length=300)
