"""fitting: gradient-based fitting of hhjax models to recorded voltage traces (Optax)."""

__all__: list[str] = []
