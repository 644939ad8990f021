"""Build already-valid contract models without re-validating them (hot path only).

The domain builds models from values that came out of validated models or compiled rules;
validating them again costs more than the rest of a transition. This is what pydantic's own
``model_construct`` does, minus its per-field default handling: every field must be given.
``tests/unit/test_domain_build.py`` checks the result equals a validated model.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__


def build(cls: type[M], values: dict[str, Any], fields_set: set[str] | None = None) -> M:
    """Return a ``cls`` holding ``values`` (all of its fields), without validation."""
    model = cls.__new__(cls)
    _set(model, "__dict__", values)
    _set(model, "__pydantic_fields_set__", set(values) if fields_set is None else fields_set)
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model
