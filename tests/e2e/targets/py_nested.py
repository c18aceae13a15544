"""e2e target: a request handler whose helper blocks the loop (issue 6).

``handle_request`` calls ``load_config``, which calls time.sleep(0.2): the
stall's stack must read clock_nanosleep < ... < load_config < handle_request,
each Python frame with this file and the line of its call.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _lineapp  # noqa: E402


def load_config():
    time.sleep(0.2)  # LINE:sleep
    return b"config"


async def handle_request():
    config = load_config()  # LINE:load_config
    return b"slow " + config


if __name__ == "__main__":
    # "uvloop": the same on uvloop, whose loop is Cython calling libuv.
    _lineapp.run("py_nested", handle_request, use_uvloop="uvloop" in sys.argv[1:])
