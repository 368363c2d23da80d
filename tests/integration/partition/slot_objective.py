"""An HPO objective that holds the devices its worker was given, like a real trial holds a GPU.

Each trial takes an exclusive, non-blocking file lock per device id it sees in ``$SLOT_VAR``;
a lock already held by another running trial is a device shared by two workers. Each trial
appends what it saw to ``$SLOT_DIR/trials.jsonl``.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any


def hold_devices(ctx: Any) -> float:
    slots = Path(os.environ["SLOT_DIR"])
    ids = [d for d in os.environ.get(os.environ["SLOT_VAR"], "").split(",") if d]
    handles, shared = [], []
    for device in ids:
        handle = (slots / f"device-{device}.lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            shared.append(device)
        handles.append(handle)
    start = time.time()
    time.sleep(float(os.environ.get("SLOT_HOLD", "0.4")))
    end = time.time()
    record = {"pid": os.getpid(), "ids": ids, "shared": shared, "start": start, "end": end}
    with (slots / "trials.jsonl").open("a") as log:
        log.write(json.dumps(record) + "\n")
    for handle in handles:
        handle.close()
    return float(ctx.params["x"]) ** 2
