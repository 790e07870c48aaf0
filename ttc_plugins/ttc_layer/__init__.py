"""The Test-Time Control layer as an adapter that engines can host.

:mod:`.config` (the adapter's shape, read from a file's metadata; no torch) and :mod:`.adapter`
(the module itself).
"""
