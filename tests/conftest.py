"""Test-wide set-up: the throwaway Redis plugin, and a guard for the machine's own Redis.

Until a test points the service at its throwaway Redis, REDIS_URL names a closed port, so
code that forgot to do so fails loudly instead of touching a Redis on the default port.
"""

import os

os.environ["REDIS_URL"] = "redis://127.0.0.1:1/0"

pytest_plugins = ["tests.redis_fixtures"]


def pytest_collection_modifyitems(items: list) -> None:  # type: ignore[type-arg]
    """Every test under tests/integration starts processes (Redis, workers, sandboxes): mark
    it ``integration`` so ``make test-fast`` (``-m "not integration"``) leaves it out."""
    import pytest  # pytest is only here when pytest runs this hook

    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
