"""Delimiter tokens the engine stops at itself (``search.stop_tokens``)."""

from ttc_plugins.search.stop_tokens import tokens_containing


class Vocab:
    """A tokenizer's surface as ``tokens_containing`` reads it."""

    def __init__(self, pieces, special=()):
        self.pieces, self.all_special_ids = pieces, list(special)
        self.decoded = 0

    def __len__(self):
        return len(self.pieces)

    def batch_decode(self, seqs, **_):
        self.decoded += 1
        return ["".join(self.pieces[i] for i in s) for s in seqs]


def test_tokens_holding_the_whole_string_are_found():
    v = Vocab(["a", "\n", "b\n", "\n\n  ", "\r", "c", "\n", "\ufffd\n"], special=[6])
    # the special token (6) and the incomplete character (7) are left out
    assert tokens_containing(v, ["\n"]) == [1, 2, 3]
    assert tokens_containing(v, ["\n", "c"]) == [1, 2, 3, 5]
    assert tokens_containing(v, ["b\n\n"]) == []  # split over tokens: the frontend's check finds it


def test_no_strings_no_tokens_and_results_are_cached_per_tokenizer():
    v = Vocab(["x", "\n"])
    assert tokens_containing(v, []) == [] and tokens_containing(v, [""]) == []
    assert v.decoded == 0
    tokens_containing(v, ["\n"])
    tokens_containing(v, ["\n", "\n"])
    assert v.decoded == 1
