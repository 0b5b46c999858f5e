"""docs/migrating.md stays true: its Flask example sends one segment per request with what the SDK's
middleware and ``xray_recorder`` recorded, and its table names every flag and key of AWS's daemon,
each one k8sxray's daemon accepts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from k8sxray.daemon import settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "migrating.md"

# AWS's Go daemon: its flags (short, long) and its cfg.yaml keys (version 2).
GO_FLAGS = {
    "b": "bind",
    "t": "bind-tcp",
    "m": "buffer-memory",
    "n": "region",
    "r": "role-arn",
    "a": "resource-arn",
    "p": "proxy-address",
    "o": "local-mode",
    "c": "config",
    "l": "log-level",
    "f": "log-file",
    "v": "version",
    "h": "help",
}


def _flatten(keys: dict[str, object], prefix: str = "") -> set[str]:
    found = set()
    for key, sub in keys.items():
        found |= _flatten(sub, f"{prefix}{key}.") if isinstance(sub, dict) else {prefix + key}
    return found


def test_the_table_maps_every_go_flag_and_yaml_key() -> None:
    text = DOC.read_text(encoding="utf-8")
    table = [line for line in text.split("## From the Go daemon", 1)[1].splitlines() if line.startswith("|")]
    rows = table[2:]  # below the header and its rule
    flags = {f for row in rows for f in re.findall(r"`(--?[a-z-]+)`", row.split("|")[1])}
    assert flags == {f"-{short}" for short in GO_FLAGS} | {f"--{long}" for long in GO_FLAGS.values()}
    keys = {k for row in rows for k in re.findall(r"`([A-Za-z.]+)`", row.split("|")[2])}
    assert keys == _flatten(settings._YAML_KEYS)
    ours = {(flag.short, flag.long) for flag in settings._FLAGS}
    assert set(GO_FLAGS.items()) <= ours  # k8sxray's daemon takes each of them


def test_the_flask_example_sends_one_segment_with_the_sdks_records() -> None:
    block = re.search(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert block
    code = block.group(1) + textwrap.dedent(
        """
        import json
        from k8sxray.testing import capture_segments

        @app.get("/orders/<int:order_id>")
        def order(order_id):
            xray_recorder.put_annotation("order_id", order_id)
            with xray_recorder.in_subsegment("load-order"):
                pass
            return {"order": order_id}

        k8sxray.configure(service_name="checkout", sampling_rate=1, environ={})
        with capture_segments() as segments:
            answer = app.test_client().get("/orders/7")
            k8sxray.flush()
        print(json.dumps({"status": answer.status_code, "segments": segments}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == 200
    [segment] = result["segments"]
    assert segment["name"] == "checkout"
    assert segment["annotations"] == {"order_id": 7}
    assert [s["name"] for s in segment["subsegments"]] == ["load-order"]
    assert segment["http"]["response"]["status"] == 200
