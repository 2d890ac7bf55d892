"""Inputs that hit bugs this fuzzing found and reported, which the owners have not fixed yet.

Each class is pinned by a strict-xfail regression test (`test_known_*` in the fuzz modules):
when the owner fixes it, that test passes, strict xfail turns it into a failure, and the entry
here and the xfail marker go together. Until then the fuzzers `assume()` these inputs away, so
they keep hunting for NEW problems instead of re-finding the known ones every run.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

# Above this many nodes after alias expansion, the rule loader's line-map walks take seconds
# (9 levels of 9 aliases: hours).
_EXPANSION_LIMIT = 5_000


def _compose(text: str) -> Any:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        return RecursionError
    except yaml.YAMLError:
        return None


def yaml_nesting_bug(text: str) -> str | None:
    """Both loaders: YAML nested a few hundred levels deep raises RecursionError (PyYAML's
    composer recurses per level) instead of the loader's own error."""
    return "deep-nesting" if _compose(text) is RecursionError else None


def registry_bug(data: bytes) -> str | None:
    """ingest.registry: a top-level mapping with a non-scalar key (`{[a]: 1}`) raises
    TypeError while sorting the problems (the key node list becomes the problem's column)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    if nested := yaml_nesting_bug(text):
        return nested
    root = _compose(text)
    if isinstance(root, yaml.MappingNode) and any(
        not isinstance(k, yaml.ScalarNode) for k, _ in root.value
    ):
        return "registry-non-scalar-top-key"
    return None


def _expanded_size(node: Any, memo: dict[int, int], stack: set[int]) -> int:
    """Node count with aliases expanded; -1 for a cycle (an alias inside its own anchor)."""
    key = id(node)
    if key in stack:
        return -1
    if key in memo:
        return memo[key]
    stack.add(key)
    total = 1
    if isinstance(node, yaml.MappingNode):
        children = [c for kv in node.value for c in kv]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    else:
        children = []
    for c in children:
        n = _expanded_size(c, memo, stack)
        if n < 0:
            stack.discard(key)
            return -1
        total += n
        if total > 10 * _EXPANSION_LIMIT:
            break
    stack.discard(key)
    memo[key] = total
    return total


def _non_finite(v: Any) -> bool:
    if isinstance(v, float):
        return not math.isfinite(v)
    if isinstance(v, dict):
        return any(_non_finite(k) or _non_finite(x) for k, x in v.items())
    if isinstance(v, list | tuple | set):
        return any(_non_finite(x) for x in v)
    return False


def rules_bug(text: str) -> str | None:
    """rules.loader, three classes:
    - an alias inside its own anchor (`rules: &a [*a]`) raises RecursionError, and aliases
      that expand exponentially (the "billion laughs") make it walk for hours;
    - `.inf`/`.nan` numbers: `for: .inf` raises OverflowError, `levels: {H: .nan}` and
      `deadband: .inf` are accepted (a NaN set point never fires);
    - deep nesting (see `yaml_nesting_bug`)."""
    if nested := yaml_nesting_bug(text):
        return nested
    root = _compose(text)
    if isinstance(root, yaml.Node):
        size = _expanded_size(root, {}, set())
        if size < 0:
            return "rules-recursive-alias"
        if size > _EXPANSION_LIMIT:
            return "rules-alias-expansion"
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        return None
    if _non_finite(data):
        return "rules-non-finite-number"
    return None
