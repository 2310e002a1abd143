from __future__ import annotations

import pytest

from worker.config import Secret, Settings, mask_url_password
from worker.core.errors import ConfigurationError


def test_secrets_never_print() -> None:
    settings = Settings.from_env({"KLAVIYO_API_KEY": "pk_live_abc",
                                  "IPAAS_API_TOKEN": "ipaas-s3cret",
                                  "WEBHOOK_API_KEY": "hook-s3cret", "REDIS_URL": "redis://:redis-s3cret@h:1/0"})
    shown = repr(settings) + str(settings.describe()) + f"{settings.klaviyo_api_key}"
    for secret in ("pk_live_abc", "ipaas-s3cret", "hook-s3cret", "redis-s3cret"):
        assert secret not in shown
    assert settings.klaviyo_api_key.value == "pk_live_abc"
    assert repr(Secret("")) == "''"


def test_defaults_follow_the_design() -> None:
    settings = Settings.from_env({})
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.klaviyo_base_url == "https://a.klaviyo.com"
    assert settings.klaviyo_revision == "2026-07-15"
    assert settings.ipaas_base_url == "https://api.ipaas.com"
    assert settings.generate_events is True and settings.mapping_file is None


def test_bad_values_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="GENERATE_EVENTS"):
        Settings.from_env({"GENERATE_EVENTS": "maybe"})
    with pytest.raises(ConfigurationError, match="HTTP_TIMEOUT"):
        Settings.from_env({"HTTP_TIMEOUT": "soon"})


def test_defaults_hand_a_dead_workers_tasks_back_within_two_minutes() -> None:
    settings = Settings.from_env({})
    # Handed back after the visibility timeout, found by kombu's restore within a tenth more.
    assert settings.broker_visibility_timeout * 1.1 <= 120
    # The lost-task sweep looks at a step within a fifth more of its grace.
    assert settings.lost_task_after_seconds * 1.2 <= 120
    # Retries wait in Redis: their cap no longer has to stay below the visibility timeout.
    assert settings.retry_cap_seconds > settings.broker_visibility_timeout


def test_a_task_may_not_outlive_the_visibility_timeout() -> None:
    with pytest.raises(ConfigurationError, match="BROKER_VISIBILITY_TIMEOUT"):
        Settings.from_env({"TASK_TIME_LIMIT_SECONDS": "120"})
    with pytest.raises(ConfigurationError, match="BROKER_VISIBILITY_TIMEOUT"):
        Settings.from_env({"BROKER_VISIBILITY_TIMEOUT": "60"})
    settings = Settings.from_env({"TASK_TIME_LIMIT_SECONDS": "120",
                                  "BROKER_VISIBILITY_TIMEOUT": "150"})
    assert settings.task_hard_time_limit_seconds == 130


def test_a_step_has_time_for_a_limiter_wait_and_its_calls() -> None:
    with pytest.raises(ConfigurationError, match="RATE_LIMIT_MAX_WAIT_SECONDS"):
        Settings.from_env({"RATE_LIMIT_MAX_WAIT_SECONDS": "45"})
    with pytest.raises(ConfigurationError, match="HTTP_TIMEOUT"):
        Settings.from_env({"HTTP_TIMEOUT": "30"})


def test_require_names_every_missing_setting() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({}).require("klaviyo_api_key", "ipaas_system_id")
    assert "KLAVIYO_API_KEY" in str(caught.value) and "IPAAS_SYSTEM_ID" in str(caught.value)


def test_url_password_masking() -> None:
    assert mask_url_password("redis://localhost:6379/0") == "redis://localhost:6379/0"
    assert mask_url_password("redis://user:pw@h:1/0") == "redis://user:<SECRET>@h:1/0"
