"""config: the settings from the environment."""

from __future__ import annotations

import dataclasses

import pytest
from dropbatch.config import Config
from dropbatch.errors import UsageError


def test_config_from_env_casts_and_refuses_nonsense():
    cfg = Config.from_env(
        {
            "DROPBATCH_BUCKET": "b",
            "DROPBATCH_MAX_JOB_REQUESTS": "1_000",
            "GOOGLE_CLOUD_PROJECT": "p",
        }
    )
    assert (cfg.bucket, cfg.max_job_requests, cfg.project) == ("b", 1000, "p")
    with pytest.raises(UsageError, match="DROPBATCH_MAX_ERRORS"):
        Config.from_env({"DROPBATCH_MAX_ERRORS": "many"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.bucket = "other"
