"""e2e target: an asyncio request handler that calls time.sleep(0.2) once.

The default asyncio event loop serves a few dozen fast requests and one slow
one; the slow one blocks the loop for 200 ms in ``handle_slow_request``.
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
    _lineapp.run("py_sleep", handle_slow_request)
