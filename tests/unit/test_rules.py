"""Rules: every operator, every output form, stage semantics, validation errors, bundled sets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from iwd_stream.contracts.models import WorkItemFields
from iwd_stream.domain import RuleBook, RulesError, UnknownTenantError, load_bundled_rules
from iwd_stream.domain.rules import Condition, load_rules, parse_rules

T0 = datetime(2024, 3, 4, 9, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ("gold", "gold", True),
        ("gold", "silver", False),
        (3, "3", True),  # YAML int vs CSV text
        (["a", "b"], "b", True),
        (["a", "b"], "c", False),
        ({"equals": "x"}, "x", True),
        ({"in": [1, 2]}, 2, True),
        ({"not_in": ["x"]}, "y", True),
        ({"not_in": ["x"]}, "x", False),
        ({"regex": "^Noise"}, "Noise - Park", True),
        ({"regex": "^Noise"}, "Loud Noise", False),
        ({"gt": 5}, 6, True),
        ({"gt": 5}, 5, False),
        ({"gte": 5}, 5, True),
        ({"lt": 5}, "4.5", True),
        ({"lte": 5}, 6, False),
        ({"gte": 1, "lt": 3}, 2, True),
        ({"gte": 1, "lt": 3}, 3, False),
        ({"gt": 1}, "1 - Critical", False),  # not a number: no match, no error
        ({"missing": True}, None, True),
        ({"missing": True}, "x", False),
        ({"missing": False}, None, False),
        ({"missing": False}, "x", True),
        ("gold", None, False),
        ({"regex": "."}, None, False),
    ],
)
def test_operators(spec: Any, value: Any, expected: bool) -> None:
    assert Condition.compile("customer_segment", spec).matches(value) is expected


STAGED = """
rules_version: 7
missing_values: ["?"]
calendars:
  office: {timezone: UTC, hours: {mon-fri: "09:00-17:00"}}
defaults: {priority: 1, business_value: 2, calendar: office}
classification:
  global:
    - {name: billing, when: {category: billing}, set: {department: finance, due_in: 8h}}
    - {name: any, set: {department: general}}
  department:
    - name: finance
      when: {department: finance}
      set: {queue: {from: attributes.region, format: "fin-{value}", transform: slug, default: "fin"}}
    - {name: general, set: {queue: general}}
  process:
    - name: skills
      when: {attributes.lang: {missing: false}}
      set: {skills: {from: attributes.lang, map: {fr: [french], de: [german]}, default: [english]}}
prioritization:
  - {name: vip, when: {customer_segment: gold}, set: {priority: 90}}
  - {name: amount, when: {attributes.amount: {gte: 1000}}, set: {business_value: 75}, override: true}
reprioritization:
  - name: fast
    when: {priority: {gte: 90}}
    step: {add: 5, every: 10m, up_to: 100}
    jumps: [{due_within: 1h, priority: 99}]
    max: 100
sla:
  - {name: default, at_risk_before_due: 2h, expire_after_due: 1d}
"""


def classify(attrs: dict[str, Any] | None = None, **fields: Any):  # type: ignore[no-untyped-def]
    return parse_rules(STAGED, "staged.yaml").classify(
        WorkItemFields(attributes=attrs, **fields), T0
    )


def test_stages_run_in_order_and_later_stages_see_earlier_outputs() -> None:
    c = classify({"region": "EU West"}, category="billing")
    assert c.fields.department == "finance"
    assert c.fields.queue == "fin-eu-west"
    assert c.matched[:2] == ("classification.global:billing", "classification.department:finance")


def test_first_match_wins_within_a_stage() -> None:
    c = classify(category="other")
    assert c.fields.department == "general" and c.fields.queue == "general"


def test_map_default_and_missing_marker() -> None:
    assert classify({"lang": "fr"}, category="x").fields.skills == ["french"]
    assert classify({"lang": "pt"}, category="x").fields.skills == ["english"]
    # "?" is a missing marker: the process rule does not match, skills stay at the default.
    assert classify({"lang": "?"}, category="x").fields.skills == []
    assert classify({"region": "?"}, category="billing").fields.queue == "fin"


def test_source_values_win_unless_the_rule_overrides() -> None:
    c = classify(
        {"amount": 5000}, category="x", customer_segment="gold", priority=10, business_value=1
    )
    assert c.fields.priority == 10  # the source said 10; `vip` does not override
    c = classify({"amount": 5000}, category="x", business_value=1)
    assert c.fields.business_value == 75  # `amount` overrides


def test_defaults_fill_what_no_rule_set() -> None:
    c = classify(category="x")
    assert (c.fields.priority, c.fields.business_value, c.calendar) == (1, 2, "office")


def test_due_in_counts_business_time_and_source_due_wins() -> None:
    friday_4pm = datetime(2024, 3, 1, 16, tzinfo=UTC)
    c = parse_rules(STAGED).classify(WorkItemFields(category="billing", created_at=friday_4pm), T0)
    assert c.fields.due_at == datetime(2024, 3, 4, 16, tzinfo=UTC)  # 1 h Fri + 7 h Mon
    assert c.fields.expire_at == datetime(2024, 3, 5, 16, tzinfo=UTC)
    given = datetime(2024, 5, 1, tzinfo=UTC)
    c = parse_rules(STAGED).classify(WorkItemFields(category="billing", due_at=given), T0)
    assert c.fields.due_at == given


def test_reprioritization_and_sla_policy_resolved_into_the_entry_dict() -> None:
    c = classify(category="x", customer_segment="gold")
    assert c.reprioritization == {
        "rule": "fast",
        "step": {"add": 5, "every_s": 600.0, "max": 100, "business": False},
        "jumps": [{"within_s": 3600.0, "priority": 99}],
        "max": 100,
        "at_risk_s": 7200.0,
    }


def test_no_queue_is_an_error_for_the_item() -> None:
    rules = parse_rules(
        "rules_version: 1\nclassification: {global: [{name: a, when: {category: x}, set: {queue: q}}]}"
    )
    c = rules.classify(WorkItemFields(category="y"), T0)
    assert c.fields.queue is None and c.error is not None


def test_text_priority_from_a_source_is_not_copied_into_an_int_field() -> None:
    rules = parse_rules(
        "rules_version: 1\nprioritization: [{name: p, set: {priority: {from: attributes.p}}}]"
    )
    assert rules.classify(WorkItemFields(attributes={"p": "7"}), T0).fields.priority == 7
    assert rules.classify(WorkItemFields(attributes={"p": "high"}), T0).fields.priority == 0


@pytest.mark.parametrize(
    ("doc", "path", "problem"),
    [
        ("rules_version: 1\nbogus: 1", "bogus", "Extra inputs"),
        ("classification: {}", "rules_version", "Field required"),
        (
            "rules_version: 1\nclassification: {global: [{name: a, when: {prio: 1}}]}",
            "classification.global[0].when.prio",
            "unknown field 'prio'",
        ),
        (
            "rules_version: 1\nclassification: {global: [{name: a, when: {category: {like: x}}}]}",
            "classification.global[0].when.category.like",
            "unknown operator 'like'",
        ),
        (
            "rules_version: 1\nprioritization: [{name: a, when: {category: {regex: '('}}}]",
            "prioritization[0].when.category.regex",
            "invalid regular expression",
        ),
        (
            "rules_version: 1\nprioritization: [{name: a, when: {priority: {gt: high}}}]",
            "prioritization[0].when.priority.gt",
            "needs a number",
        ),
        (
            "rules_version: 1\nprioritization: [{name: a, set: {queue: q}}]",
            "prioritization[0].set.queue",
            "cannot set 'queue' here",
        ),
        (
            "rules_version: 1\nprioritization: [{name: a, set: {priority: high}}]",
            "prioritization[0].set.priority",
            "must be an integer",
        ),
        (
            "rules_version: 1\nclassification: {process: [{name: a, set: {due_in: soon}}]}",
            "classification.process[0].set.due_in",
            "is not a duration",
        ),
        (
            "rules_version: 1\nclassification: {global: [{name: a, set: {calendar: nope}}]}",
            "classification.global[0].set.calendar",
            "not defined",
        ),
        (
            "rules_version: 1\ncalendars: {c: {timezone: Mars/X, hours: {all: '00:00-24:00'}}}",
            "calendars.c",
            "unknown time zone",
        ),
        (
            "rules_version: 1\nprioritization: [{name: a}, {name: a}]",
            "prioritization[1].name",
            "used twice",
        ),
        (
            "rules_version: 1\nclassification: {global: [{name: a, set: {queue: {from: attributes.x, map: {a: 1}}}}]}",
            "classification.global[0].set.queue.map.a",
            "must be a string",
        ),
        (
            "rules_version: 1\nreprioritization: [{name: a, step: {add: 1, every: 0m, up_to: 5}}]",
            "reprioritization[0].step.every",
            "must be positive",
        ),
        (
            "rules_version: 1\nprioritization: [{name: a, when: {attributes.x: {}}}]",
            "prioritization[0].when['attributes.x']",
            "empty condition",
        ),
        ("rules_version: [1\n", "line 2, column 1", "not valid YAML"),
        ("- just a list", "(document)", "is a mapping"),
    ],
)
def test_validation_errors_name_file_path_and_problem(doc: str, path: str, problem: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_rules(doc, "tenant.yaml")
    err = info.value
    assert err.file == "tenant.yaml"
    assert err.path == path
    assert problem in err.problem
    assert str(err).startswith(f"tenant.yaml: {path}: ")


def test_load_rules_from_file_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "acme.yaml"
    p.write_text("rules_version: 3\ntenant: acme\n")
    assert load_rules(p).version == "3"
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "nope.yaml")
    book = RuleBook.load_dir(tmp_path)
    assert book.tenants() == ["acme"]
    with pytest.raises(UnknownTenantError):
        book.get("globex")


def test_bundled_servicenow_rules_classify_the_real_columns() -> None:
    rules = load_bundled_rules("servicenow")
    row = {
        "priority": "1 - Critical",
        "assignment_group": "Group 70",
        "category": "Category 53",
        "impact": "1 - High",
        "urgency": "1 - High",
        "contact_type": "Phone",
    }
    c = rules.classify(WorkItemFields(attributes=row), T0)
    f = c.fields
    assert (f.queue, f.priority, f.business_value, f.skills, f.media_type) == (
        "sn-service-desk",
        100,
        100,
        ["network"],
        "voice",
    )
    assert f.due_at == T0 + timedelta(hours=4)  # critical: 4 h around the clock
    unknown_group = rules.classify(
        WorkItemFields(attributes={**row, "assignment_group": "Group 56"}), T0
    )
    assert unknown_group.fields.queue == "sn-general"
    no_group = rules.classify(WorkItemFields(attributes={**row, "assignment_group": "?"}), T0)
    assert no_group.fields.queue is None and no_group.error
    low = rules.classify(WorkItemFields(attributes={**row, "priority": "4 - Low"}), T0)
    assert low.fields.priority == 25 and low.calendar == "it-hours"


def test_bundled_nyc311_rules_route_by_agency_and_keep_source_due_dates() -> None:
    rules = load_bundled_rules("nyc311")
    row = {
        "agency": "HPD",
        "complaint_type": "HEAT/HOT WATER",
        "descriptor": "ENTIRE BUILDING",
        "borough": "BRONX",
        "open_data_channel_type": "PHONE",
    }
    f = rules.classify(WorkItemFields(attributes=row), T0).fields
    assert (f.department, f.queue, f.category, f.priority, f.media_type) == (
        "HPD",
        "nyc-hpd",
        "HEAT/HOT WATER",
        80,
        "voice",
    )
    assert f.skills == ["heat-hot-water"]
    due = datetime(2024, 5, 16, 5, 27, tzinfo=UTC)
    f = rules.classify(WorkItemFields(attributes={**row, "agency": "DSNY"}, due_at=due), T0).fields
    assert f.due_at == due and f.queue == "nyc-dsny"


def test_bundled_rulebook_has_both_tenants() -> None:
    assert RuleBook.bundled().tenants() == ["nyc311", "servicenow"]
    with pytest.raises(RulesError, match="no bundled rules"):
        load_bundled_rules("sap")
