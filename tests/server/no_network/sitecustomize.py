"""Imported at start-up by the ComfyUI server of tests/server/test_no_network.py (it is on that server's PYTHONPATH):
refuses every outbound connection that is not to this machine, and writes each refused address to
$DRAGKIT_NET_LOG, so the test can show what tried to reach the network."""

import os
import socket

_LOG = os.environ.get("DRAGKIT_NET_LOG")
_LOCAL = {"127.0.0.1", "::1", "localhost"}
_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def _refuse_outbound(real):
    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in _LOCAL:
            if _LOG:
                with open(_LOG, "a") as f:
                    f.write(f"{host}:{address[1] if isinstance(address, tuple) else ''}\n")
            raise OSError("outbound network refused (DragKit's no-network test)")
        return real(self, address)

    return guarded


if _LOG:
    socket.socket.connect = _refuse_outbound(_connect)
    socket.socket.connect_ex = _refuse_outbound(_connect_ex)
    with open(_LOG, "a") as f:  # proof that the guard is in place, for the test
        f.write(f"# guard active in process {os.getpid()}\n")
