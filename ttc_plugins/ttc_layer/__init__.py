"""The Test-Time Control layer as an adapter that engines can host.

:mod:`.config` (an adapter file's shape and metadata; no torch), :mod:`.adapter` (the module, its
zero-initialised gate, the files), :mod:`.hf` (adapters inside a transformers model) and
:mod:`.train` (``ttc adapter train`` / ``eval``: training on a frozen model).
"""
