"""Tenant rules: classification, prioritisation, re-prioritisation, SLA, ordering and dispatch.

One YAML document per tenant (see ``iwd_stream/rules/*.yaml`` for complete examples)::

    rules_version: "2024.1"
    tenant: acme
    missing_values: ["?"]                 # source values that mean "not set"
    calendars:
      office: {timezone: Europe/Lisbon, hours: {mon-fri: "08:00-18:00"}, holidays: [2024-12-25]}
    defaults: {priority: 10, business_value: 0, calendar: office}
    classification:                       # stages run in this order; first match wins in each
      global:
        - name: vip
          when: {customer_segment: gold, attributes.amount: {gte: 1000}}
          set: {business_value: 80, due_in: 4h}
      department:
        - name: by-agency
          when: {attributes.agency: {missing: false}}
          set: {department: {from: attributes.agency}, queue: {from: attributes.agency, format: "q-{value}", transform: slug}}
      process: []
    prioritization:                       # first match wins
      - {name: vip, when: {business_value: {gte: 80}}, set: {priority: 70}}
    reprioritization:                     # first match wins
      - name: default
        step: {add: 10, every: 15m, up_to: 100, business_time: true}
        jumps: [{due_within: 1h, priority: 90}]
        max: 100
    sla:                                  # first match wins
      - {name: default, at_risk_before_due: 1h, expire_after_due: 30d}
    ordering: {priority_weight: 1, business_value_weight: 0.1, age_per_hour: 1}
    dispatch: {offer_timeout: 30s}

A condition key is a work-item field (``priority``, ``queue``, ``department`` ...; later stages
see what earlier stages set) or ``attributes.<name>`` for a free attribute. A condition value is
a scalar (equals), a list (in), or a mapping of operators that must all hold: ``equals``,
``in``, ``not_in``, ``regex`` (re.search), ``gt``/``gte``/``lt``/``lte`` (numbers or numeric
strings), ``missing`` (true: absent, null, empty or a ``missing_values`` marker).

An output is a literal, or ``{from: <key>, map: {...}, default: ..., format: "x-{value}",
transform: lower|upper|slug}``. Values the source sent win over rule outputs unless the rule says
``override: true``. No queue after classification means the item is ``error_held``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from iwd_stream.contracts.models import WorkItemFields
from iwd_stream.domain._build import build
from iwd_stream.domain.business_calendar import BusinessCalendar, add_time
from iwd_stream.domain.errors import RulesError, UnknownCalendarError, UnknownTenantError
from iwd_stream.domain.scoring import Jump, Reprioritization, Step, Weights
from iwd_stream.domain.timeutil import parse_duration

# ---------------------------------------------------------------------------------------------
# Document structure (validated by pydantic; `when` and `set` are compiled by hand below so
# their errors can name the exact key and operator).

Duration = str | int | float


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CalendarDoc(_Doc):
    timezone: str
    hours: dict[str, str | list[str]]
    holidays: list[date | str] = []


class DefaultsDoc(_Doc):
    priority: int = 0
    business_value: int = 0
    queue: str | None = None
    calendar: str | None = None
    media_type: str | None = None
    skills: list[str] = []


class RuleDoc(_Doc):
    name: str = Field(min_length=1)
    when: dict[str, Any] = {}
    set: dict[str, Any] = {}
    override: bool = False


class StagesDoc(_Doc):
    global_: list[RuleDoc] = Field(default=[], alias="global")
    department: list[RuleDoc] = []
    process: list[RuleDoc] = []


class StepDoc(_Doc):
    add: int = Field(gt=0)
    every: Duration
    up_to: int
    business_time: bool = False


class JumpDoc(_Doc):
    due_within: Duration
    priority: int


class ReprioDoc(_Doc):
    name: str = Field(min_length=1)
    when: dict[str, Any] = {}
    step: StepDoc | None = None
    jumps: list[JumpDoc] = []
    max: int | None = None


class SlaDoc(_Doc):
    name: str = Field(min_length=1)
    when: dict[str, Any] = {}
    at_risk_before_due: Duration | None = None
    expire_after_due: Duration | None = None


class OrderingDoc(_Doc):
    priority_weight: float = Field(default=1.0, ge=0)
    business_value_weight: float = Field(default=0.1, ge=0)
    age_per_hour: float = Field(default=1.0, ge=0)
    at_risk_bonus: float = 10.0
    breached_bonus: float = 20.0


class DispatchDoc(_Doc):
    offer_timeout: Duration = "30s"


class RulesDoc(_Doc):
    rules_version: str | int
    tenant: str | None = None
    description: str | None = None
    missing_values: list[str] = []
    calendars: dict[str, CalendarDoc] = {}
    defaults: DefaultsDoc = DefaultsDoc()
    classification: StagesDoc = StagesDoc()
    prioritization: list[RuleDoc] = []
    reprioritization: list[ReprioDoc] = []
    sla: list[SlaDoc] = []
    ordering: OrderingDoc = OrderingDoc()
    dispatch: DispatchDoc = DispatchDoc()


# ---------------------------------------------------------------------------------------------
# Compiled rules

_FIELD_NAMES = frozenset(WorkItemFields.model_fields) - {"attributes"}
_TEXT_OUTPUTS = frozenset(
    {"category", "department", "process", "queue", "media_type", "channel", "customer_segment"}
)
_INT_OUTPUTS = frozenset({"priority", "business_value"})
_CLASSIFY_OUTPUTS = _TEXT_OUTPUTS | _INT_OUTPUTS | {"skills", "due_in", "expire_in", "calendar"}
_PRIORITIZE_OUTPUTS = _INT_OUTPUTS
_OPERATORS = ("equals", "in", "not_in", "regex", "gt", "gte", "lt", "lte", "missing")
_SLUG = re.compile(r"[^a-z0-9]+")

Lookup = Callable[[str], Any]


class _Problem(Exception):
    """A compile-time problem at a path below the one the caller knows."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if "." in key or " " in key:
        return f"{path}[{key!r}]"
    return f"{path}.{key}" if path else key


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _same(a: Any, b: Any) -> bool:
    # YAML reads `3` as an int while a CSV connector sends "3": compare as text when types differ.
    if a == b:
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    return str(a) == str(b)


@dataclass(frozen=True)
class Condition:
    """One condition on one key; every operator in it must hold.

    >>> c = Condition.compile("attributes.impact", {"in": ["1 - High", "2 - Medium"]})
    >>> c.matches("2 - Medium"), c.matches("3 - Low"), c.matches(None)
    (True, False, False)
    >>> Condition.compile("priority", {"gte": 3, "lt": 5}).matches("4")
    True
    """

    key: str
    ops: tuple[tuple[str, Any], ...]

    @classmethod
    def compile(cls, key: str, spec: Any) -> Condition:
        if not (key.startswith("attributes.") and len(key) > 11) and key not in _FIELD_NAMES:
            raise _Problem(
                "",
                f"unknown field {key!r} (fields: {', '.join(sorted(_FIELD_NAMES))}; "
                f"use 'attributes.{key}' for a free attribute)",
            )
        if isinstance(spec, list):
            ops: list[tuple[str, Any]] = [("in", tuple(spec))]
        elif isinstance(spec, dict):
            if not spec:
                raise _Problem("", "empty condition (give a value, a list or operators)")
            ops = []
            for op, arg in spec.items():
                if op not in _OPERATORS:
                    raise _Problem(
                        str(op), f"unknown operator {op!r} (use {', '.join(_OPERATORS)})"
                    )
                ops.append((op, cls._arg(op, arg)))
        else:
            ops = [("equals", spec)]
        return cls(key, tuple(ops))

    @staticmethod
    def _arg(op: str, arg: Any) -> Any:
        if op in ("in", "not_in"):
            if not isinstance(arg, list):
                raise _Problem(op, f"{op!r} needs a list, got {type(arg).__name__}")
            return tuple(arg)
        if op == "regex":
            if not isinstance(arg, str):
                raise _Problem(op, "'regex' needs a string")
            try:
                return re.compile(arg)
            except re.error as exc:
                raise _Problem(op, f"invalid regular expression {arg!r}: {exc}") from None
        if op in ("gt", "gte", "lt", "lte"):
            if _number(arg) is None or isinstance(arg, str):
                raise _Problem(op, f"{op!r} needs a number, got {arg!r}")
            return float(arg)
        if op == "missing" and not isinstance(arg, bool):
            raise _Problem(op, "'missing' needs true or false")
        return arg

    def matches(self, value: Any) -> bool:
        """Return whether ``value`` (None when missing) satisfies every operator."""
        for op, arg in self.ops:
            if op == "missing":
                if (value is None) != arg:
                    return False
                continue
            if value is None:
                return False
            if op == "equals":
                ok = _same(value, arg)
            elif op == "in":
                ok = any(_same(value, a) for a in arg)
            elif op == "not_in":
                ok = not any(_same(value, a) for a in arg)
            elif op == "regex":
                ok = arg.search(str(value)) is not None
            else:
                n = _number(value)
                ok = n is not None and (
                    (op == "gt" and n > arg)
                    or (op == "gte" and n >= arg)
                    or (op == "lt" and n < arg)
                    or (op == "lte" and n <= arg)
                )
            if not ok:
                return False
        return True


@dataclass(frozen=True)
class Output:
    """A rule output: a literal, or a value taken from a key (optionally mapped and formatted)."""

    literal: Any = None
    source: str | None = None
    table: Mapping[str, Any] | None = None
    default: Any = None
    fmt: str | None = None
    transform: str | None = None

    def value(self, lookup: Lookup) -> Any:
        """Return the output for the item ``lookup`` reads.

        >>> Output(source="attributes.agency", fmt="nyc-{value}", transform="slug").value(
        ...     {"attributes.agency": "NYPD"}.get)
        'nyc-nypd'
        """
        if self.source is None:
            return self.literal
        raw = lookup(self.source)
        # Mapped values and the default are written out in full by the rule author: only a value
        # copied from the item is formatted and transformed.
        if self.table is not None:
            return self.table.get(str(raw), self.default) if raw is not None else self.default
        if raw is None:
            return self.default
        if isinstance(raw, list | int) and self.fmt is None and self.transform is None:
            return raw
        text = str(raw)
        if self.fmt is not None:
            text = self.fmt.format(value=text)
        if self.transform == "lower":
            text = text.lower()
        elif self.transform == "upper":
            text = text.upper()
        elif self.transform == "slug":
            text = _SLUG.sub("-", text.lower()).strip("-")
        return text


@dataclass(frozen=True)
class Rule:
    name: str
    conditions: tuple[Condition, ...]
    outputs: Mapping[str, Output] = field(default_factory=dict)
    override: bool = False

    def matches(self, lookup: Lookup) -> bool:
        return all(c.matches(lookup(c.key)) for c in self.conditions)


@dataclass(frozen=True)
class ReprioRule:
    name: str
    conditions: tuple[Condition, ...]
    step: Step | None
    jumps: tuple[Jump, ...]
    max: int | None


@dataclass(frozen=True)
class SlaRule:
    name: str
    conditions: tuple[Condition, ...]
    at_risk: timedelta | None
    expire_after_due: timedelta | None


@dataclass(frozen=True)
class Classification:
    """What the rules made of an item: effective fields, matched rules and its policies."""

    fields: WorkItemFields
    matched: tuple[str, ...]
    reprioritization: dict[str, object]
    calendar: str | None
    error: str | None = None


def _coerce(key: str, value: Any) -> Any:
    # A `from:` without a map copies whatever the source sent; fit it to the field's type so
    # a stray text priority ("high") becomes "no value" instead of a corrupt item.
    if value is None:
        return None
    if key in _INT_OUTPUTS:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        n = _number(value)
        return int(n) if n is not None else None
    if key == "skills":
        return [value] if isinstance(value, str) else [str(v) for v in value]
    return str(value)


def _first(rules: Iterable[Any], lookup: Lookup) -> Any:
    for rule in rules:
        if all(c.matches(lookup(c.key)) for c in rule.conditions):
            return rule
    return None


@dataclass(frozen=True)
class TenantRules:
    """One tenant's compiled rules. Build with :func:`load_rules` or :func:`parse_rules`."""

    version: str
    file: str
    tenant: str | None
    missing_values: frozenset[str]
    calendars: Mapping[str, BusinessCalendar]
    defaults: DefaultsDoc
    stages: tuple[tuple[str, tuple[Rule, ...]], ...]
    prioritization: tuple[Rule, ...]
    reprioritization: tuple[ReprioRule, ...]
    sla: tuple[SlaRule, ...]
    weights: Weights
    offer_timeout: timedelta
    _policies: dict[tuple[str | None, str | None], dict[str, object]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def calendar(self, name: str | None) -> BusinessCalendar | None:
        """Return the named calendar (None for None); raise UnknownCalendarError otherwise."""
        if name is None:
            return None
        try:
            return self.calendars[name]
        except KeyError:
            raise UnknownCalendarError(
                f"{self.file}: calendar {name!r} is not defined (known: {', '.join(self.calendars)})"
            ) from None

    def _lookup(self, values: Mapping[str, Any], attributes: Mapping[str, Any]) -> Lookup:
        missing = self.missing_values

        def lookup(key: str) -> Any:
            value = attributes.get(key[11:]) if key.startswith("attributes.") else values.get(key)
            if value is None or value == "" or (isinstance(value, str) and value in missing):
                return None
            return value

        return lookup

    def classify(self, source: WorkItemFields, created_at: datetime) -> Classification:
        """Classify and prioritise an item from its source fields; pure and deterministic.

        >>> rules = parse_rules('''
        ... rules_version: 1
        ... classification:
        ...   global:
        ...     - {name: billing, when: {category: billing}, set: {queue: billing, due_in: 4h}}
        ... prioritization:
        ...   - {name: gold, when: {customer_segment: gold}, set: {priority: 80}}
        ... ''')
        >>> from datetime import UTC
        >>> t0 = datetime(2024, 1, 1, 9, tzinfo=UTC)
        >>> c = rules.classify(WorkItemFields(category="billing", customer_segment="gold"), t0)
        >>> c.fields.queue, c.fields.priority, c.fields.due_at.hour, c.matched
        ('billing', 80, 13, ('classification.global:billing', 'prioritization:gold'))
        >>> rules.classify(WorkItemFields(category="other"), t0).error
        'no classification rule gave the item a queue'
        """
        values: dict[str, Any] = dict(source.__dict__)
        attributes = source.attributes or {}
        from_source = {k for k, v in values.items() if v is not None and k != "attributes"}
        lookup = self._lookup(values, attributes)
        matched: list[str] = []
        due_in: timedelta | None = None
        expire_in: timedelta | None = None
        calendar_name = self.defaults.calendar

        def apply(rule: Rule, label: str) -> None:
            nonlocal due_in, expire_in, calendar_name
            matched.append(f"{label}:{rule.name}")
            for key, out in rule.outputs.items():
                if key == "due_in":
                    due_in = out.literal
                elif key == "expire_in":
                    expire_in = out.literal
                elif key == "calendar":
                    calendar_name = out.literal
                elif rule.override or key not in from_source:
                    value = _coerce(key, out.value(lookup))
                    if key == "queue" and value is not None:
                        value = str(value).replace("/", "-").strip() or None
                    values[key] = value

        for label, rules in self.stages:
            rule = _first(rules, lookup)
            if rule is not None:
                apply(rule, f"classification.{label}")
        rule = _first(self.prioritization, lookup)
        if rule is not None:
            apply(rule, "prioritization")

        d = self.defaults
        for key, default in (
            ("priority", d.priority),
            ("business_value", d.business_value),
            ("queue", d.queue),
            ("media_type", d.media_type),
        ):
            if values.get(key) is None:
                values[key] = default
        if values.get("skills") is None:
            values["skills"] = list(d.skills)
        elif isinstance(values["skills"], str):
            values["skills"] = [values["skills"]]
        calendar = self.calendar(calendar_name)
        if values.get("created_at") is None:
            values["created_at"] = created_at
        if values.get("due_at") is None and due_in is not None:
            values["due_at"] = add_time(calendar, values["created_at"], due_in)

        reprio = _first(self.reprioritization, lookup)
        sla = _first(self.sla, lookup)
        if values.get("expire_at") is None:
            if expire_in is not None:
                values["expire_at"] = add_time(calendar, values["created_at"], expire_in)
            elif sla is not None and sla.expire_after_due is not None and values.get("due_at"):
                values["expire_at"] = values["due_at"] + sla.expire_after_due
        policy = self._policy(reprio, sla)
        if reprio is not None:
            matched.append(f"reprioritization:{reprio.name}")
        if sla is not None:
            matched.append(f"sla:{sla.name}")
        values["attributes"] = source.attributes
        fields = build(WorkItemFields, values, {k for k, v in values.items() if v is not None})
        error = None if values.get("queue") else "no classification rule gave the item a queue"
        return Classification(fields, tuple(matched), dict(policy), calendar_name, error)

    def _policy(self, reprio: ReprioRule | None, sla: SlaRule | None) -> dict[str, object]:
        # Few (reprioritization, sla) rule pairs exist: build each policy dict once.
        key = (reprio.name if reprio else None, sla.name if sla else None)
        policy = self._policies.get(key)
        if policy is None:
            policy = Reprioritization(
                rule=reprio.name if reprio else None,
                step=reprio.step if reprio else None,
                jumps=reprio.jumps if reprio else (),
                max=reprio.max if reprio else None,
                at_risk=sla.at_risk if sla else None,
            ).to_dict()
            self._policies[key] = policy
        return policy


# ---------------------------------------------------------------------------------------------
# Compilation and loading


def _compile_when(when: Mapping[str, Any], path: str) -> tuple[Condition, ...]:
    out = []
    for key, spec in when.items():
        try:
            out.append(Condition.compile(str(key), spec))
        except _Problem as p:
            where = _join(path, str(key))
            raise _Problem(_join(where, p.path) if p.path else where, p.problem) from None
    return tuple(out)


def _check_output_type(key: str, value: Any, path: str) -> None:
    if value is None:
        return
    if key in _INT_OUTPUTS and (isinstance(value, bool) or not isinstance(value, int)):
        raise _Problem(path, f"{key} must be an integer, got {value!r}")
    if key == "skills" and not (
        isinstance(value, str)
        or (isinstance(value, list) and all(isinstance(s, str) for s in value))
    ):
        raise _Problem(path, f"skills must be a string or a list of strings, got {value!r}")
    if key in _TEXT_OUTPUTS and not isinstance(value, str):
        raise _Problem(path, f"{key} must be a string, got {value!r}")


def _compile_output(key: str, spec: Any, path: str, calendars: Mapping[str, Any]) -> Output:
    if key in ("due_in", "expire_in"):
        try:
            return Output(literal=parse_duration(spec))
        except (ValueError, TypeError) as exc:
            raise _Problem(path, str(exc)) from None
    if key == "calendar":
        if spec not in calendars:
            raise _Problem(path, f"calendar {spec!r} is not defined under 'calendars'")
        return Output(literal=spec)
    if isinstance(spec, dict):
        allowed = {"from", "map", "default", "format", "transform"}
        extra = set(spec) - allowed
        if extra:
            raise _Problem(path, f"unknown keys {sorted(extra)} (use {', '.join(sorted(allowed))})")
        if "from" not in spec:
            raise _Problem(path, "a computed output needs 'from: <field or attributes.name>'")
        src = str(spec["from"])
        if not src.startswith("attributes.") and src not in _FIELD_NAMES:
            raise _Problem(_join(path, "from"), f"unknown field {src!r}")
        table = spec.get("map")
        if table is not None and not isinstance(table, dict):
            raise _Problem(_join(path, "map"), "'map' must be a mapping of value -> output")
        for k, v in (table or {}).items():
            _check_output_type(key, v, _join(_join(path, "map"), str(k)))
        _check_output_type(key, spec.get("default"), _join(path, "default"))
        fmt = spec.get("format")
        if fmt is not None and (not isinstance(fmt, str) or "{value}" not in fmt):
            raise _Problem(_join(path, "format"), "'format' must be a string containing {value}")
        transform = spec.get("transform")
        if transform not in (None, "lower", "upper", "slug"):
            raise _Problem(_join(path, "transform"), "'transform' is one of lower, upper, slug")
        return Output(
            source=src,
            table={str(k): v for k, v in table.items()} if table else None,
            default=spec.get("default"),
            fmt=fmt,
            transform=transform,
        )
    _check_output_type(key, spec, path)
    return Output(literal=[spec] if key == "skills" and isinstance(spec, str) else spec)


def _compile_rules(
    docs: list[RuleDoc], path: str, allowed: frozenset[str], calendars: Mapping[str, Any]
) -> tuple[Rule, ...]:
    rules, names = [], set()
    for i, doc in enumerate(docs):
        at = _join(path, i)
        if doc.name in names:
            raise _Problem(_join(at, "name"), f"rule name {doc.name!r} is used twice in {path}")
        names.add(doc.name)
        outputs = {}
        for key, spec in doc.set.items():
            if key not in allowed:
                raise _Problem(
                    _join(_join(at, "set"), key),
                    f"cannot set {key!r} here (allowed: {', '.join(sorted(allowed))})",
                )
            outputs[key] = _compile_output(key, spec, _join(_join(at, "set"), key), calendars)
        rules.append(
            Rule(doc.name, _compile_when(doc.when, _join(at, "when")), outputs, doc.override)
        )
    return tuple(rules)


def _duration(value: Duration | None, path: str) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except (ValueError, TypeError) as exc:
        raise _Problem(path, str(exc)) from None


def _compile(doc: RulesDoc, file: str) -> TenantRules:
    calendars = {}
    for name, cal in doc.calendars.items():
        try:
            calendars[name] = BusinessCalendar.build(name, cal.timezone, cal.hours, cal.holidays)
        except ValueError as exc:
            raise _Problem(_join("calendars", name), str(exc)) from None
    if doc.defaults.calendar is not None and doc.defaults.calendar not in calendars:
        raise _Problem(
            "defaults.calendar",
            f"calendar {doc.defaults.calendar!r} is not defined under 'calendars'",
        )
    stages = tuple(
        (label, _compile_rules(docs, f"classification.{label}", _CLASSIFY_OUTPUTS, calendars))
        for label, docs in (
            ("global", doc.classification.global_),
            ("department", doc.classification.department),
            ("process", doc.classification.process),
        )
    )
    prio = _compile_rules(doc.prioritization, "prioritization", _PRIORITIZE_OUTPUTS, calendars)
    reprio = []
    for i, r in enumerate(doc.reprioritization):
        at = _join("reprioritization", i)
        step = None
        if r.step is not None:
            every = _duration(r.step.every, _join(_join(at, "step"), "every"))
            assert every is not None
            if every <= timedelta(0):
                raise _Problem(_join(_join(at, "step"), "every"), "step interval must be positive")
            step = Step(r.step.add, every, r.step.up_to, r.step.business_time)
        jumps = []
        for j, jd in enumerate(r.jumps):
            within = _duration(jd.due_within, _join(_join(_join(at, "jumps"), j), "due_within"))
            assert within is not None
            jumps.append(Jump(within, jd.priority))
        reprio.append(
            ReprioRule(r.name, _compile_when(r.when, _join(at, "when")), step, tuple(jumps), r.max)
        )
    sla = [
        SlaRule(
            s.name,
            _compile_when(s.when, _join(_join("sla", i), "when")),
            _duration(s.at_risk_before_due, _join(_join("sla", i), "at_risk_before_due")),
            _duration(s.expire_after_due, _join(_join("sla", i), "expire_after_due")),
        )
        for i, s in enumerate(doc.sla)
    ]
    o = doc.ordering
    timeout = _duration(doc.dispatch.offer_timeout, "dispatch.offer_timeout")
    assert timeout is not None
    if timeout <= timedelta(0):
        raise _Problem("dispatch.offer_timeout", "the offer timeout must be positive")
    return TenantRules(
        version=str(doc.rules_version),
        file=file,
        tenant=doc.tenant,
        missing_values=frozenset(doc.missing_values),
        calendars=calendars,
        defaults=doc.defaults,
        stages=stages,
        prioritization=prio,
        reprioritization=tuple(reprio),
        sla=tuple(sla),
        weights=Weights(
            o.priority_weight,
            o.business_value_weight,
            o.age_per_hour,
            o.at_risk_bonus,
            o.breached_bonus,
        ),
        offer_timeout=timeout,
    )


def _loc(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path = _join(path, "global" if part == "global_" else part)
    return path


def parse_rules(text: str, file: str = "<rules>") -> TenantRules:
    """Parse and compile a rules document; raise RulesError naming file, path and problem.

    >>> parse_rules("rules_version: 1\\nprioritization: [{name: a, when: {prio: 1}}]", "x.yaml")
    Traceback (most recent call last):
    ...
    iwd_stream.domain.errors.RulesError: x.yaml: prioritization[0].when.prio: unknown field 'prio' (...)
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise RulesError(file, where, f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise RulesError(
            file, "", "a rules document is a mapping (rules_version, classification, ...)"
        )
    try:
        doc = RulesDoc.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        problem = first["msg"]
        if len(errors) > 1:
            problem += "; also " + "; ".join(f"{_loc(e['loc'])}: {e['msg']}" for e in errors[1:4])
        raise RulesError(file, _loc(first["loc"]), problem) from None
    try:
        return _compile(doc, file)
    except _Problem as p:
        raise RulesError(file, p.path, p.problem) from None


def load_rules(path: str | Path) -> TenantRules:
    """Load a rules YAML file (see :func:`parse_rules`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(str(p), "", f"cannot read: {exc.strerror or exc}") from None
    return parse_rules(text, str(p))


BUNDLED = ("servicenow", "nyc311")


def load_bundled_rules(name: str) -> TenantRules:
    """Load one of the rule sets shipped in ``iwd_stream/rules`` (``servicenow``, ``nyc311``)."""
    ref = resources.files("iwd_stream") / "rules" / f"{name}.yaml"
    if not ref.is_file():
        raise RulesError(
            f"iwd_stream/rules/{name}.yaml",
            "",
            f"no bundled rules named {name!r} (have: {', '.join(BUNDLED)})",
        )
    return parse_rules(ref.read_text(encoding="utf-8"), f"iwd_stream/rules/{name}.yaml")


class RuleBook:
    """The rules of every tenant: tenant -> :class:`TenantRules`; unknown tenants are an error.

    >>> book = RuleBook({"acme": parse_rules("rules_version: 1")})
    >>> book.get("acme").version
    '1'
    >>> book.get("globex")
    Traceback (most recent call last):
    ...
    iwd_stream.domain.errors.UnknownTenantError: no rules loaded for tenant 'globex' (known: acme)
    """

    def __init__(self, rules: Mapping[str, TenantRules]) -> None:
        self._rules = dict(rules)

    @classmethod
    def load(cls, paths: Mapping[str, str | Path]) -> RuleBook:
        """Load ``{tenant: path}``."""
        return cls({tenant: load_rules(p) for tenant, p in paths.items()})

    @classmethod
    def load_dir(cls, directory: str | Path) -> RuleBook:
        """Load every ``*.yaml`` in a directory; the tenant is its ``tenant:`` key or file stem."""
        out: dict[str, TenantRules] = {}
        for p in sorted(Path(directory).glob("*.yaml")):
            rules = load_rules(p)
            tenant = rules.tenant or p.stem
            if tenant in out:
                raise RulesError(str(p), "tenant", f"tenant {tenant!r} is defined by two files")
            out[tenant] = rules
        return cls(out)

    @classmethod
    def bundled(cls) -> RuleBook:
        """Return the shipped example rules, keyed by their ``tenant:`` (servicenow, nyc311)."""
        out = {}
        for name in BUNDLED:
            rules = load_bundled_rules(name)
            out[rules.tenant or name] = rules
        return cls(out)

    def get(self, tenant: str) -> TenantRules:
        try:
            return self._rules[tenant]
        except KeyError:
            raise UnknownTenantError(tenant, sorted(self._rules)) from None

    def __contains__(self, tenant: object) -> bool:
        return tenant in self._rules

    def tenants(self) -> list[str]:
        return sorted(self._rules)


__all__ = [
    "Classification",
    "Condition",
    "RuleBook",
    "TenantRules",
    "load_bundled_rules",
    "load_rules",
    "parse_rules",
]
