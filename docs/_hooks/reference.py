"""mkdocs hook: the generated parts of the docs, built from the code at build time.

- ``<!-- ttc-reference: KIND -->`` in a page becomes the parameter tables of every component of
  that kind the default plugins register (``controls``, ``decoders``, ``search``, ``scorers``,
  ``embedders``) or of the ``ttc.beam`` object (``beam``), read from each component's pydantic
  ``Params`` model: the fields a request may send, their JSON types, defaults and bounds. The
  prose around them is written by hand; these tables cannot drift from the validators.
- The hook reference page is rendered by mkdocstrings from ``ttc_plugins/hookspecs.py``; its
  docstrings are reStructuredText (Sphinx roles such as ``:class:`~X```, ``Write a plugin::``
  before a literal block) that Markdown shows verbatim, so ``on_page_content`` drops the role and
  the ``~`` and keeps the code span, and ends such a paragraph with one colon.

Runs in the unit session's environment, where ttc-plugins is installed (``mkdocs build --strict``
in noxfile.py): an unknown KIND fails the build.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

MARKER = re.compile(r"<!-- ttc-reference: (\w+) -->")
SPHINX_ROLE = re.compile(r":(?:mod|class|func|meth|attr|data|exc|obj):(<code>)~?")
LITERAL_BLOCK_INTRO = re.compile(r"::</p>")


def on_config(config: Any, **kwargs: Any) -> Any:
    # the tables are read from the installed package, the version whose validators run
    try:
        import ttc_plugins  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"the docs build reads ttc-plugins' models: install it first "
                         f"(pip install -e '.[docs]'): {exc}") from None
    return config


def _manager():
    from ttc_plugins.manager import TTCPluginManager

    # default plugins only: the docs describe what ttc-plugins itself ships
    return TTCPluginManager(load_entrypoints=False)


def _rst(text: str) -> str:
    return text.replace("``", "`")


def _summary(component: type) -> str:
    """The component's own docstring, else its module's, first paragraph."""
    doc = component.__dict__.get("__doc__") or sys.modules[component.__module__].__doc__ or ""
    return _rst(" ".join(doc.strip().split("\n\n")[0].split()))


def _type(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in schema:
        return _type(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "anyOf" in schema:
        return " or ".join(_type(s, defs) for s in schema["anyOf"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " or ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type(schema['items'], defs)}" if "items" in schema else "list"
    return {"integer": "integer", "number": "number", "string": "string", "boolean": "boolean",
            "null": "null", "object": "object"}.get(kind, kind)


def _bounds(schema: dict[str, Any]) -> str:
    out = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in schema:
            out.append(f"{sign} {schema[key]:g}")
    for low, high, unit in (("minItems", "maxItems", "items"), ("minLength", "maxLength", "characters")):
        if low in schema and high in schema:
            out.append(f"{schema[low]} to {schema[high]} {unit}")
        elif high in schema:
            out.append(f"at most {schema[high]} {unit}")
        elif schema.get(low) == 1:
            out.append("non-empty")
        elif low in schema:
            out.append(f"at least {schema[low]} {unit}")
    return ", ".join(out)


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    from pydantic_core import to_jsonable_python

    return f"`{json.dumps(to_jsonable_python(field.get_default(call_default_factory=True)))}`"


def params_table(model: type, only: set[str] | None = None) -> str:
    """A Markdown table of ``model``'s fields (all, or those in ``only``)."""
    schema = model.model_json_schema()
    props, defs = schema.get("properties", {}), schema.get("$defs", {})
    rows = ["| field | type | default | bounds | meaning |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if only is not None and name not in only:
            continue
        prop = props.get(name, {})
        cells = [f"`{name}`", _type(prop, defs), _default(field), _bounds(prop), _rst(prop.get("description", ""))]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) if len(rows) > 2 else "No arguments."


def _section(component: type, only: set[str] | None = None) -> str:
    return (f"### `{component.name}`\n\n{_summary(component)} (`{component.__module__}`)\n\n"
            f"{params_table(component.Params, only)}\n")


def _search(pm) -> str:
    from ttc_plugins.search.params import SearchParams

    shared = SearchParams.model_fields
    parts = ["### Every strategy\n\nShared by all strategies (`ttc_plugins.search.params.SearchParams`):\n",
             params_table(SearchParams), ""]
    for strategy in pm.strategies:
        own = {n for n, f in strategy.Params.model_fields.items()
               if n not in shared or f.get_default(call_default_factory=True)
               != shared[n].get_default(call_default_factory=True)}
        parts.append(_section(strategy, own) if own else
                     f"### `{strategy.name}`\n\n{_summary(strategy)} (`{strategy.__module__}`)\n\n"
                     "Only the shared fields.\n")
    return "\n".join(parts)


def reference(kind: str) -> str:
    """The generated Markdown for ``<!-- ttc-reference: KIND -->``."""
    if kind == "beam":
        from ttc_plugins.token_beam import BeamParams

        return params_table(BeamParams)
    pm = _manager()
    if kind == "search":
        return _search(pm)
    registries = {"controls": pm.controls, "decoders": pm.decoders, "scorers": pm.scorers,
                  "embedders": pm.embedders}
    if kind not in registries:
        raise ValueError(f"<!-- ttc-reference: {kind} -->: unknown kind; known: beam, search, {', '.join(registries)}")
    return "\n".join(_section(c) for c in registries[kind])


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return MARKER.sub(lambda m: reference(m.group(1)), markdown)


def on_page_content(html: str, **kwargs: Any) -> str:
    return LITERAL_BLOCK_INTRO.sub(":</p>", SPHINX_ROLE.sub(r"\1", html))
