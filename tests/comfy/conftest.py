import comfyenv
import pytest


@pytest.fixture(scope="session")
def comfy():
    comfyenv.setup()
    return comfyenv


@pytest.fixture
def tiny_model(comfy):
    return comfy.tiny_sd15_model()
