"""Read the parameters a runner passed to a cocotb testbench."""

import json
import os


def params() -> dict:
    return json.loads(os.environ.get("TILEFAB_PARAMS", "{}"))
