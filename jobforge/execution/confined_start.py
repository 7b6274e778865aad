"""The first code of a hosted user process: ``python -P -m jobforge.execution.confined_start <control-fd>``.

It waits for its setup frame on the control socket (the server sends it once
the process is in its memory cgroup, so nothing runs before the limit
holds), confines itself (``isolation.enter``: the same confinement as a
job's worker), applies the address-space limit where no cgroup holds one,
then runs the setup's module: ``module.main(control_socket, settings)``.
Standard library and jobforge's execution modules only: the process may run
under another Python than the server's.
"""

from __future__ import annotations

import importlib
import resource
import socket
import sys

from jobforge.execution import frames, isolation

MAX_SETUP = 1024 * 1024


def main(fd: int) -> None:
    control = socket.socket(fileno=fd)
    received = frames.receive(control, MAX_SETUP)
    if received is None:
        return  # the server went away before the process was set up
    setup = received[0]
    isolation.enter(setup["confinement"])
    if setup.get("address_space_bytes"):
        limit = setup["address_space_bytes"]
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    importlib.import_module(setup["module"]).main(control, setup["settings"])


if __name__ == "__main__":
    main(int(sys.argv[1]))
