"""Token ids whose own text holds a whole stop string.

vLLM checks stop strings in its frontend, after detokenizing. By the time the frontend has seen a
step's delimiter and aborted the request, the engine has usually decoded a token or two more for
it, which are thrown away, and a held step's children wait that long for their parent. A token
whose own text contains the whole delimiter ends the step exactly where the frontend's check would,
so the search ops pass those tokens as ``stop_token_ids`` as well: the engine stops at them itself,
and the frontend's stop-string check (``include_stop_str_in_output``) still cuts the text as
before. A stop string split over two tokens is found by the frontend only, as before.
"""

from __future__ import annotations

import weakref
from typing import Any, Sequence

_cache: "weakref.WeakKeyDictionary[Any, dict[tuple[str, ...], list[int]]]" = weakref.WeakKeyDictionary()


def tokens_containing(tokenizer: Any, strings: Sequence[str]) -> list[int]:
    """Ids of the tokens whose decoded text contains one of ``strings`` (special tokens and
    tokens that decode to an incomplete character left out). Cached per tokenizer."""
    key = tuple(sorted({s for s in strings if s}))
    if not key:
        return []
    try:
        per_tokenizer = _cache.setdefault(tokenizer, {})
    except TypeError:  # a tokenizer that cannot be weakly referenced: no cache
        per_tokenizer = {}
    if key not in per_tokenizer:
        special = set(getattr(tokenizer, "all_special_ids", ()) or ())
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=False,
                                       clean_up_tokenization_spaces=False)
        per_tokenizer[key] = [i for i, t in enumerate(texts)
                              if i not in special and "\ufffd" not in t and any(s in t for s in key)]
    return per_tokenizer[key]
