"""Test-wide set-up: the throwaway Redis plugin, and a guard for the machine's own Redis.

Until a test points the service at its throwaway Redis, REDIS_URL names a closed port, so
code that forgot to do so fails loudly instead of touching a Redis on the default port.
"""

import os

os.environ["REDIS_URL"] = "redis://127.0.0.1:1/0"

pytest_plugins = ["tests.redis_fixtures"]
