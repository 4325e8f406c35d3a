"""The server tier: a real ComfyUI server on a free loopback port with only DragKit loaded."""

import pytest

import comfy_server
from comfy_client import MINI_CHECKPOINT, TEST_IMAGE, Client, sample_image


@pytest.fixture(scope="session")
def server(tmp_path_factory, mini_checkpoint):
    base = comfy_server.prepare_base(tmp_path_factory.mktemp("comfy-base"))
    (base / "models" / "checkpoints" / MINI_CHECKPOINT).symlink_to(mini_checkpoint)
    sample_image().save(base / "input" / TEST_IMAGE)
    running = comfy_server.start(base)
    yield running
    running.stop()


@pytest.fixture
def client(server) -> Client:
    return Client(server)


