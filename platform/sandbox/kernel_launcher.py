"""Starts a code cell's Jupyter kernel inside its sandbox, as the learner (kernels.sandbox starts the container).

The kernel binds its five sockets as files in /kernel, a folder shared with the kernel manager on the host. umask 0
makes those sockets connectable by the manager's user, whichever it is (root under ./bin/run, the app's user in
compose); nobody else shares this container, so nothing else can reach them. The manager closes /kernel to the
learner once the sockets exist, so code in the kernel can neither plant files there nor replace a socket.
"""

import os
import runpy
import sys

os.umask(0)
sys.argv = [
    "ipykernel_launcher",
    "-f",
    "/kernel/connection.json",
    "--HistoryManager.enabled=False",  # no SQLite history in a read-mostly sandbox
    "--InteractiveShell.colors=nocolor",  # plain tracebacks; the manager strips any colour left anyway
]
runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)
