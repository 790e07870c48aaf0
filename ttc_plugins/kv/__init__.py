"""KV management defaults: cache isolation, prefix forks, eviction under a KV budget."""
