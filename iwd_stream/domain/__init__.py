"""The pure domain core: work-item lifecycle, rules, calendars, scoring, SLA and dispatch.

Imports nothing from Kafka, Faust, Prometheus or ``os`` and never reads the clock: every
function that needs the time takes ``now``. The streaming stages call:

* per work-item event / assignment response: :func:`apply` (workitems stage);
* per queue command: :meth:`QueueIndex.apply`; per tick: :meth:`QueueIndex.advance`;
  per capacity message: :func:`dispatch` (queues stage).
"""

from iwd_stream.domain.business_calendar import BusinessCalendar, add_time, elapsed
from iwd_stream.domain.dispatch import (
    DispatchResult,
    assignment_id,
    dispatch,
    offers_wanted,
    select,
    skip_reason,
)
from iwd_stream.domain.errors import RulesError, UnknownCalendarError, UnknownTenantError
from iwd_stream.domain.queue import (
    Change,
    CommandResult,
    QueueIndex,
    SortedKeyList,
    Timeline,
    apply_command,
    capacity_from_offer,
)
from iwd_stream.domain.rules import (
    Classification,
    RuleBook,
    TenantRules,
    load_bundled_rules,
    load_rules,
    parse_rules,
)
from iwd_stream.domain.scoring import (
    DEFAULT_WEIGHTS,
    Reprioritization,
    Scorable,
    Score,
    Weights,
    next_change,
    score,
    sla_state,
)
from iwd_stream.domain.workitem import (
    SEEN_EVENT_IDS,
    Outcome,
    Rejection,
    apply,
    assigned_event,
    derive_status,
    queue_entry,
    released_event,
    sla_event,
)

__all__ = [
    "DEFAULT_WEIGHTS",
    "SEEN_EVENT_IDS",
    "BusinessCalendar",
    "Change",
    "Classification",
    "CommandResult",
    "DispatchResult",
    "Outcome",
    "QueueIndex",
    "Rejection",
    "Reprioritization",
    "RuleBook",
    "RulesError",
    "Scorable",
    "Score",
    "SortedKeyList",
    "TenantRules",
    "Timeline",
    "UnknownCalendarError",
    "UnknownTenantError",
    "Weights",
    "add_time",
    "apply",
    "apply_command",
    "assigned_event",
    "assignment_id",
    "capacity_from_offer",
    "derive_status",
    "dispatch",
    "elapsed",
    "load_bundled_rules",
    "load_rules",
    "next_change",
    "offers_wanted",
    "parse_rules",
    "queue_entry",
    "released_event",
    "score",
    "select",
    "skip_reason",
    "sla_event",
    "sla_state",
]
