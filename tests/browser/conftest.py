"""Browser tests share the integration tests' stack: real Redis, worker and sandboxes."""

from tests.integration.conftest import stack

__all__ = ["stack"]
