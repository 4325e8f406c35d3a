import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Unit tests use tiny tensors (tests/conftest.py: one_thread)."""
    yield
