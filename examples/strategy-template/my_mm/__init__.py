"""A template package of market-making strategies for hftmm (see ../pyproject.toml)."""
