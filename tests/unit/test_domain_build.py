"""The domain's no-validation builder must produce exactly what validation would."""

from __future__ import annotations

from datetime import timedelta

from domain_fixtures import RULES, T0, assigned, ev, response, run, step

from iwd_stream.contracts import decode, encode
from iwd_stream.contracts.models import HistoryRecord, QueueCommand, WorkItem, WorkItemFields


def test_models_built_on_the_hot_path_survive_validation() -> None:
    item = run(ev("create", 1, category="billing", priority=3, attributes={"x": 1}), assigned())
    out = step(item, response("declined"))
    assert out.item is not None
    for model, cls in [
        (out.item, WorkItem),
        *[(h, HistoryRecord) for h in out.history],
        *[(c, QueueCommand) for c in out.commands],
    ]:
        validated = cls.model_validate(model.model_dump())
        assert validated == model
        assert validated.model_fields_set <= model.model_fields_set | {"schema_version"}
        assert decode(encode(model), cls) == model


def test_classified_fields_equal_validated_fields() -> None:
    c = RULES.classify(WorkItemFields(category="billing", attributes={"a": "b"}), T0)
    assert WorkItemFields.model_validate(c.fields.model_dump()) == c.fields
    assert c.fields.due_at == T0 + timedelta(hours=4)
