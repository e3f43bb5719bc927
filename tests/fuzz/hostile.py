"""Hostile values shared by the fuzz tests: what a peer (or a typo) could send.

Random bytes rarely get past the first check of a parser, so these strategies
build *almost valid* input: real structures with one value swapped for
something a careless parser trips over — deep nesting, numbers past every
limit, lone surrogates, NaN, huge strings.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import strategies as st

FUZZ_SETTINGS = {
    "max_examples": int(os.environ.get("PHONEBRIDGE_FUZZ_EXAMPLES", "150")),
    "deadline": None,
}
"""Modest by default: the suite must stay fast. `make fuzz` raises the count."""

# Numbers that break naive code: past int64, past float, past Python's
# int<->str digit limit (4300 digits, a ValueError from int()/str()), NaN.
huge_ints = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30, -1, 0])
huge_number_texts = st.sampled_from(
    ["9" * 5000, "-" + "9" * 5000, "1e999", "-1e999", "NaN", "Infinity", "1" * 30, "0.5", "-0"]
)
nasty_texts = st.sampled_from(
    ["", " ", "\x00", "\ud800", "\udfff", "é" * 10, "../../etc/passwd", "%2e%2e", "A" * 70_000]
) | st.text(max_size=20)


def deep_json(depth: int, *, opener: str = "[", closer: str = "]") -> str:
    """``[[[...]]]`` nested ``depth`` levels: json.loads raises RecursionError past ~1000."""
    return opener * depth + closer * depth


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_ints
    | st.floats(allow_nan=True, allow_infinity=True)
    | nasty_texts
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


def raw_json_replacements() -> st.SearchStrategy[str]:
    """JSON *text* for one value, including what json.dumps would never write."""
    return (
        json_values.map(lambda value: json.dumps(value, allow_nan=True))
        | huge_number_texts
        | st.integers(min_value=500, max_value=5000).map(deep_json)
        | st.integers(min_value=500, max_value=5000).map(
            lambda depth: '{"a":' * depth + "1" + "}" * depth
        )
    )
