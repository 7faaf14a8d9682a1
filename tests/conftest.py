import pytest

from dropbatch.config import Config


@pytest.fixture
def config() -> Config:
    return Config()
