"""e2e target: py_sleep on uvloop (Debian's python3 with python3-uvloop).

The handler ``handle_slow_request`` calls time.sleep(0.2) once, blocking the
uvloop (libuv) event loop for 200 ms.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lineapp  # noqa: E402


async def handle_slow_request():
    time.sleep(0.2)  # the culprit: blocks the event loop
    return b"slow"


if __name__ == "__main__":
    _lineapp.run("py_uvloop", handle_slow_request, use_uvloop=True)
