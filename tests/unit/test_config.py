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


def test_retry_cap_must_stay_below_the_visibility_timeout() -> None:
    with pytest.raises(ConfigurationError, match="BROKER_VISIBILITY_TIMEOUT"):
        Settings.from_env({"RETRY_CAP_SECONDS": "600", "BROKER_VISIBILITY_TIMEOUT": "300"})
    assert Settings.from_env({}).retry_cap_seconds < Settings.from_env({}).broker_visibility_timeout


def test_require_names_every_missing_setting() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({}).require("klaviyo_api_key", "ipaas_system_id")
    assert "KLAVIYO_API_KEY" in str(caught.value) and "IPAAS_SYSTEM_ID" in str(caught.value)


def test_url_password_masking() -> None:
    assert mask_url_password("redis://localhost:6379/0") == "redis://localhost:6379/0"
    assert mask_url_password("redis://user:pw@h:1/0") == "redis://user:<SECRET>@h:1/0"
