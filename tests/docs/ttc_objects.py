"""The ``ttc`` objects written in an example that cannot run here, so that they can be validated.

- shell: every single-quoted JSON argument (``-d '{...}'``, ``--additional-config '{...}'``) must
  parse; inside it, a ``"ttc"`` value (an object, or JSON text as in vLLM's ``vllm_xargs``) is one;
- JSON blocks: the block itself, when its keys are ``ttc`` keys;
- Python: every dict display whose keys are ``ttc`` keys, or that has a ``"strategy"`` (a search
  object), evaluated on its own; one that needs the example's variables is skipped.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Iterator

TTC_KEYS = {"control", "decoding", "search", "beam"}
SHELL_JSON = re.compile(r"'(\{.*?\})'", re.S)


def is_ttc(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and set(value) <= TTC_KEYS


def _nested(value: Any) -> Iterator[dict]:
    """``ttc`` sections anywhere inside a request body or engine config."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "ttc" and isinstance(item, str):
                item = json.loads(item)
            if key == "ttc" and is_ttc(item):
                yield item
            else:
                yield from _nested(item)
    elif isinstance(value, list):
        for item in value:
            yield from _nested(item)


def from_shell(code: str) -> list[dict]:
    """Raises ``json.JSONDecodeError`` on a JSON argument that does not parse."""
    return [obj for text in SHELL_JSON.findall(code.replace("\\\n", "")) for obj in _nested(json.loads(text))]


def from_json(code: str) -> list[dict]:
    value = json.loads(code)
    return [value] if is_ttc(value) else list(_nested(value))


def from_python(code: str) -> list[dict]:
    found = []
    for node in ast.walk(ast.parse(code)):
        if not isinstance(node, ast.Dict) or not node.keys:
            continue
        keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
        if not (keys <= TTC_KEYS or "strategy" in keys):
            continue
        try:  # the repository's own example text, evaluated without builtins or names
            value = eval(compile(ast.Expression(node), "<example>", "eval"), {"__builtins__": {}}, {})
        except NameError:
            continue
        found.append(value if is_ttc(value) else {"search": value})
    return found
