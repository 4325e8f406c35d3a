"""DragKit never needs the network at run time (issue 19): the toy DragDiffusion graph runs on a server whose every
outbound connection is refused (tests/server/no_network/sitecustomize.py, loaded by that server's Python)."""

from __future__ import annotations

from pathlib import Path

import pytest

import comfy_server
from comfy_client import TEST_IMAGE, Client, sample_image, toy_drag_graph

POINTS = '{"version": 1, "width": 128, "height": 128, "points": [{"handle": [44, 64], "target": [56, 64]}]}'


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    base = comfy_server.prepare_base(tmp_path_factory.mktemp("offline-base"))
    sample_image().save(base / "input" / TEST_IMAGE)
    log = base / "refused_connections.txt"
    log.touch()
    guard = Path(__file__).resolve().parent / "no_network"
    running = comfy_server.start(base, env={"PYTHONPATH": str(guard), "DRAGKIT_NET_LOG": str(log)})
    yield running, log
    running.stop()


def test_the_toy_graph_runs_with_outbound_connections_refused(offline):
    server, log = offline
    before = log.read_text()
    assert f"# guard active in process {server.process.pid}" in before  # the server's Python loaded the guard
    entry = Client(server).run(toy_drag_graph(TEST_IMAGE, "a red disk and a blue square", POINTS, lora_steps=2,
                                              max_iterations=3), timeout=300)
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert log.read_text() == before, f"tried to reach the network while running: {log.read_text()}"
