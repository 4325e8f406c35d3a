import pytest

import comfyenv


@pytest.fixture(scope="session")
def comfy():
    comfyenv.setup()
    return comfyenv


@pytest.fixture
def tiny_model(comfy):
    return comfy.tiny_sd15_model()


@pytest.fixture(autouse=True, scope="session")
def _temp_previews(comfy, tmp_path_factory):
    """Node previews go to ComfyUI's temp folder: point it at a pytest folder."""
    import folder_paths

    folder_paths.set_temp_directory(str(tmp_path_factory.mktemp("comfy-temp")))
