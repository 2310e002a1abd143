"""The one batching setting: SUBSCRIPTION_BATCH_WINDOW_SECONDS."""

from __future__ import annotations

import pytest

from worker.config import Settings
from worker.core.errors import ConfigurationError


def test_batching_is_on_with_a_two_second_window_by_default() -> None:
    assert Settings.from_env({}).subscription_batch_window == 2.0


def test_zero_turns_batching_off_and_a_number_sets_the_window() -> None:
    assert Settings.from_env({"SUBSCRIPTION_BATCH_WINDOW_SECONDS": "0"}
                             ).subscription_batch_window == 0.0
    assert Settings.from_env({"SUBSCRIPTION_BATCH_WINDOW_SECONDS": "0.5"}
                             ).subscription_batch_window == 0.5


@pytest.mark.parametrize("value", ["-1", "600", "soon"])
def test_a_window_out_of_range_or_not_a_number_stops_the_start(value: str) -> None:
    with pytest.raises(ConfigurationError, match="SUBSCRIPTION_BATCH_WINDOW_SECONDS"):
        Settings.from_env({"SUBSCRIPTION_BATCH_WINDOW_SECONDS": value})
