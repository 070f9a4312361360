"""The headless engine: no Textual import (enforced by import-linter in pyproject.toml)."""
