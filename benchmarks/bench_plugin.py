"""The Kubernetes plugin's costs: start-up (outside and inside Kubernetes) and per-segment attach.

    python benchmarks/bench_plugin.py [--quick]

Start-up: ``detect()`` in a fresh interpreter (import + first call) and warm, in-process.
Inside Kubernetes it reads the repo's fixture files (Downward API volume, cgroup v2, CRI-O
mountinfo) with the Downward API variables set; the API path stays off.

Per segment: the cost of carrying the same Kubernetes data on a segment, measured as
(begin + end + serialise a segment *with* the data) minus (the same *without* it):
- aws-xray-sdk: its plugin approach, ``copy.deepcopy`` of the plugin data into every segment
  (``aws`` as the recorder does; the ``k8s`` metadata namespace likewise), serialised with it;
- k8sxray: the data serialised once per configuration and concatenated into each document.
Medians of several repeats; the machine is shared, so run it a few times.
"""

from __future__ import annotations

import ast
import copy
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "plugins" / "fixtures"
sys.path.insert(0, str(ROOT))

from k8sxray.plugins import PluginData  # noqa: E402
from k8sxray.plugins.kubernetes import Sources, detect  # noqa: E402

K8S_ENV = {
    "KUBERNETES_SERVICE_HOST": "10.100.0.1",
    "KUBERNETES_SERVICE_PORT": "443",
    "POD_NAME": "checkout-7d9f8b6c5d-x7k2p",
    "POD_NAMESPACE": "shop",
    "POD_UID": "8d1e2a9f-4b5c-4e0b-9a6e-1c2d3e4f5a6b",
    "POD_IP": "10.0.3.17",
    "NODE_NAME": "ip-10-0-3-5.eu-west-1.compute.internal",
    "CONTAINER_NAME": "app",
    "K8SXRAY_CLUSTER_NAME": "prod-eu",
    "K8SXRAY_PODINFO_DIR": str(FIXTURES / "podinfo"),
}
K8S_SOURCES = Sources(
    cgroup=str(FIXTURES / "cgroup-v2-namespaced.txt"),
    mountinfo=str(FIXTURES / "mountinfo-crio.txt"),
    service_account_dir=str(FIXTURES / "no-service-account"),
)

_FRESH = """
import sys, time
sys.path.insert(0, {root!r})
import k8sxray.plugins
t = time.perf_counter()
from k8sxray.plugins.kubernetes import Sources, detect
sources = Sources(cgroup={cgroup!r}, mountinfo={mountinfo!r}, service_account_dir={sa!r})
result = detect(None, sources)
print(repr(time.perf_counter() - t))
"""


def fresh_interpreter_ms(env: dict[str, str], runs: int, pycache: str) -> float:
    """Median ms of import + detect() in new interpreters, with a bytecode cache as an install has."""
    code = _FRESH.format(
        root=str(ROOT),
        cgroup=K8S_SOURCES.cgroup,
        mountinfo=K8S_SOURCES.mountinfo,
        sa=K8S_SOURCES.service_account_dir,
    )
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = pycache  # outside the work tree
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)  # fills the cache
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        samples.append(ast.literal_eval(out.stdout.strip()) * 1000)
    return statistics.median(samples)


def per_call_us(func: Callable[[], object], number: int, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            func()
        samples.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(samples)


# --- per-segment attach ------------------------------------------------------------------------


def sdk_segment_factory(data: PluginData | None) -> Callable[[], object]:
    """begin + end + serialise one segment with the official SDK's recorder."""
    from aws_xray_sdk.core.recorder import AWSXRayRecorder

    class SerialisingEmitter:
        def send_entity(self, entity: Any) -> None:
            entity.serialize()

        def set_daemon_address(self, address: Any) -> None:
            pass

    recorder = AWSXRayRecorder()
    recorder.configure(
        service="checkout",
        sampling=False,
        plugins=(),
        context_missing="LOG_ERROR",
        emitter=SerialisingEmitter(),
    )
    k8s_metadata: dict[str, Any] = {}
    if data is not None:
        recorder._origin = data.origin
        recorder._aws_metadata.update(copy.deepcopy(dict(data.aws)))
        k8s_metadata = {ns: dict(values) for ns, values in data.metadata.items()}

    def one() -> None:
        segment = recorder.begin_segment("checkout")
        for namespace, values in k8s_metadata.items():  # the same per-segment deep copy
            segment.metadata[namespace] = copy.deepcopy(values)
        recorder.end_segment()

    return one


def k8sxray_segment_factory(data: PluginData | None) -> Callable[[], object]:
    """Build + serialise one segment with k8sxray's segment model."""
    from k8sxray import _ids
    from k8sxray._segment import Segment, Static

    static = (
        Static("checkout", sdk_version="0.1.0")
        if data is None
        else Static("checkout", sdk_version="0.1.0", origin=data.origin, aws=data.aws, metadata=data.metadata)
    )
    trace_id = "1-5759e988-bd862e3fe1be46a994272793"

    def one() -> None:
        now = time.time()
        segment = Segment(
            static,
            trace_id,
            _ids.entity_id() if hasattr(_ids, "entity_id") else "53995c3f42cd8ad8",
            None,
            now,
        )
        segment.end_time = now + 0.001
        segment.to_json()

    return one


def attach_cost(
    factory: Callable[[PluginData | None], Callable[[], object]], data: PluginData, quick: bool
) -> tuple[float, float]:
    number, repeats = (2000, 5) if quick else (20000, 9)
    plain = factory(None)
    loaded = factory(data)
    plain_us = per_call_us(plain, number, repeats)
    loaded_us = per_call_us(loaded, number, repeats)
    return loaded_us, loaded_us - plain_us  # signed: a value near 0 is within the noise


def main() -> None:
    quick = "--quick" in sys.argv
    runs = 5 if quick else 15
    outside_env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    inside_env = {**outside_env, **K8S_ENV}
    pycache = tempfile.mkdtemp(prefix="bench-plugin-pycache-")

    print("Kubernetes plugin start-up (detect() once per configure)")
    rows = [
        (
            "outside K8s, fresh interpreter (import+call)",
            f"{fresh_interpreter_ms(outside_env, runs, pycache):8.2f} ms",
        ),
        ("outside K8s, warm call", f"{per_call_us(lambda: detect({}), 10000, 7):8.2f} µs"),
        (
            "inside K8s, fresh interpreter (import+call)",
            f"{fresh_interpreter_ms(inside_env, runs, pycache):8.2f} ms",
        ),
        (
            "inside K8s, warm call (env + 3 files)",
            f"{per_call_us(lambda: detect(K8S_ENV, K8S_SOURCES), 500, 7):8.1f} µs",
        ),
    ]
    shutil.rmtree(pycache, ignore_errors=True)
    for label, figure in rows:
        print(f"  {label:46} {figure}")
    print("  (no peer: the official SDK has no Kubernetes plugin, and its EC2 plugin probes the network)")

    data = detect(K8S_ENV, K8S_SOURCES)
    assert data is not None
    print()
    print("Per-segment cost of carrying the plugin data (begin+end+serialise; attach = with - without)")
    print(f"  {'':14} {'segment with data':>18} {'attach cost':>12}")
    found = []
    for label, factory in (("aws-xray-sdk", sdk_segment_factory), ("k8sxray", k8sxray_segment_factory)):
        try:
            total, delta = attach_cost(factory, data, quick)
        except Exception as exc:  # a peer or our model missing: say so, keep the other row
            print(f"  {label:14} unavailable: {type(exc).__name__}: {exc}")
            continue
        found.append((label, total, delta))
        print(f"  {label:14} {total:>15.2f} µs {delta:>+9.2f} µs")
    if len(found) == 2:
        (_, sdk_total, sdk_delta), (_, ours_total, ours_delta) = found
        ours = f"{ours_delta:.2f} µs" if abs(ours_delta) >= 0.5 else "~0 µs (within noise)"
        print(
            f"  segment with data: k8sxray {sdk_total / ours_total:.1f}x faster;"
            f" attach cost {sdk_delta:.2f} µs vs {ours}"
        )


if __name__ == "__main__":
    main()
