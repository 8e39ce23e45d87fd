import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _tool_environment():
    from tilefab.gen import toolchain

    toolchain.apply()
    yield


def pytest_report_header(config):
    return f"tilefab cache: {os.environ.get('TILEFAB_CACHE', '~/.cache/tilefab')}"
