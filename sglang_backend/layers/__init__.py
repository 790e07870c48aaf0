"""Model-side pieces of the SGLang backend (mirrors ``vllm_backend``/``kernels`` names)."""
