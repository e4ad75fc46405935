"""HTML fragment renderer: structure, escaping, CSP-compatible markup and inline figures."""

import base64
import re
from html.parser import HTMLParser

import pytest

from analysis.report.render_html import format_value, is_pvalue_column, render_html

from .conftest import SCRIPT_TERM


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def fragment(report_document):
    return render_html(report_document)


@pytest.fixture(scope="module")
def parsed(fragment):
    collector = _Collector()
    collector.feed(fragment)
    return collector


def test_is_a_fragment_without_document_level_tags(fragment, parsed):
    assert not {tag for tag, _ in parsed.tags} & {"html", "head", "body", "title", "meta"}
    assert "<!doctype" not in fragment.lower()


def test_no_scripts_or_inline_styles_for_the_content_security_policy(parsed):
    assert not [tag for tag, _ in parsed.tags if tag in {"script", "style"}]
    assert not [attrs for _, attrs in parsed.tags if "style" in attrs or any(name.startswith("on") for name in attrs)]


def test_script_term_is_escaped_and_shown_as_text(fragment, parsed):
    assert SCRIPT_TERM not in fragment
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in fragment
    assert SCRIPT_TERM in "".join(parsed.text)


def test_sections_tables_and_figures_with_classes(parsed, report_document):
    classes = [attrs.get("class", "") for _, attrs in parsed.tags]
    assert classes.count("report-table") == len(report_document.tables())
    assert classes.count("report-figure") == len(report_document.figures())
    assert classes.count("report-section") == len(report_document.sections)
    assert "report-toc" in classes
    captions = [tag for tag, _ in parsed.tags if tag == "caption"]
    assert len(captions) == len(report_document.tables())


def test_table_of_contents_links_resolve_to_unique_anchors(parsed):
    ids = [attrs["id"] for _, attrs in parsed.tags if "id" in attrs]
    assert len(ids) == len(set(ids))
    links = [attrs["href"] for tag, attrs in parsed.tags if tag == "a"]
    assert links
    assert {link.removeprefix("#") for link in links} <= set(ids)


def test_figures_are_inline_png_with_alt_text(parsed, report_document):
    images = [attrs for tag, attrs in parsed.tags if tag == "img"]
    assert [image["alt"] for image in images] == [
        figure.title + (f". {figure.note}" if figure.note else "") for figure in report_document.figures()
    ]
    for image in images:
        prefix, _, payload = image["src"].partition(",")
        assert prefix == "data:image/png;base64"
        assert base64.b64decode(payload).startswith(b"\x89PNG\r\n\x1a\n")


def test_numbers_formatted_and_numeric_cells_marked(fragment):
    assert '<td class="num">-1.2346</td>' in fragment
    assert '<td class="num">&lt;0.0001</td>' in fragment
    assert '<td class="num">254</td>' in fragment
    assert re.search(r'<th scope="col" class="num">p_value</th>', fragment)


def test_rendering_is_deterministic(report_document, fragment):
    assert render_html(report_document) == fragment


@pytest.mark.parametrize(
    ("value", "pvalue", "expected"),
    [
        (3, False, "3"),
        (2.0, False, "2"),
        (-1.23456789, False, "-1.2346"),
        (0.5, False, "0.5"),
        (-0.00001, False, "-1e-05"),
        (-0.00004, False, "-4e-05"),
        (0.0, False, "0"),
        (float("nan"), False, "—"),
        (None, False, "—"),
        (float("-inf"), False, "-∞"),
        (True, False, "Yes"),
        (0.00009, True, "<0.0001"),
        (0.00012, True, "0.0001"),
        (0.5, True, "0.5000"),
        ("text", False, "text"),
    ],
)
def test_format_value(value, pvalue, expected):
    assert format_value(value, pvalue=pvalue) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("p", True),
        ("p_value", True),
        ("pvalue_interaction", True),
        ("P value", True),
        ("p-adj", True),
        ("estimate", False),
        ("participants", False),
        ("pooled_n", False),
    ],
)
def test_is_pvalue_column(name, expected):
    assert is_pvalue_column(name) is expected
