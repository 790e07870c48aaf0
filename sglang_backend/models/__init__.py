"""Model classes the backend adds to SGLang's ``ModelRegistry`` (``ModelRegistry.register`` on this
package, from ``register()``): each module exports ``EntryClass`` like SGLang's own models."""
