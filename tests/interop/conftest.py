"""pytest setup of the interop suite: the libraries it needs, the calq exports it checks (made two
at a time in the background while the tests load earlier ones), and the results JSON.

Without a library the suite skips, except under CI=true, where it fails: the certificate must run
on every CI run.
"""
import importlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from interop_helpers import Env, Results  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

# The loaders, by the import name and the distribution whose version the results record.
LIBRARIES = {"torch": "torch", "transformers": "transformers", "compressed_tensors": "compressed-tensors",
             "gptqmodel": "GPTQModel", "optimum": "optimum", "peft": "peft", "safetensors": "safetensors"}


def in_ci():
    return os.environ.get("CI", "") not in ("", "false", "0")


def library_versions():
    from importlib import metadata
    versions, missing = {}, []
    for module, dist in LIBRARIES.items():
        try:
            importlib.import_module(module)
            versions[dist] = metadata.version(dist)
        except Exception as e:  # an import error of any kind means "cannot check"
            missing.append(f"{module} ({type(e).__name__}: {e})")
    return versions, missing


@pytest.fixture(scope="session")
def env():
    try:
        e = Env()
    except KeyError as k:
        msg = f"interop: {k} not set; run through ctest (tests/CMakeLists.txt sets it)"
        pytest.fail(msg) if in_ci() else pytest.skip(msg)
    if not os.path.exists(os.path.join(e.fixtures, "manifest.json")):
        msg = f"interop: no family fixtures at {e.fixtures} (ctest -R families.fixtures makes them)"
        pytest.fail(msg) if in_ci() else pytest.skip(msg)
    os.makedirs(e.out, exist_ok=True)
    return e


@pytest.fixture(scope="session")
def versions():
    v, missing = library_versions()
    if missing:
        msg = "interop: cannot import " + "; ".join(missing) + " (requirements.txt, scripts/setup.sh)"
        pytest.fail(msg) if in_ci() else pytest.skip(msg)
    return v


@pytest.fixture(scope="session")
def results(env, versions):
    r = Results(os.path.join(env.out, "export_loaders.json"), {"versions": versions})
    yield r
    r.write()


@pytest.fixture(scope="session")
def exporter(env):
    """Starts every case's calq run at the start of the session, two at a time, so that calq
    exports while the test process loads the earlier ones; exporter(case_id) waits for one."""
    import test_export_loaders as t
    pool = ThreadPoolExecutor(max_workers=int(os.environ.get("CALQ_INTEROP_JOBS", "2")))
    futures = {}
    selected = os.environ.get("CALQ_INTEROP_SELECT")  # a substring of case ids, for debugging
    for case in t.CASES:
        if selected and selected not in case.id:
            continue
        if case.reason(env) is None:
            futures[case.id] = pool.submit(t.export_case, env, case)

    def get(case_id):
        return futures[case_id].result()
    yield get
    pool.shutdown(wait=True, cancel_futures=True)


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("CALQ_INTEROP_OUT")
    if out and os.path.exists(os.path.join(out, "export_loaders.json")):
        doc = json.load(open(os.path.join(out, "export_loaders.json")))
        n = len(doc["cases"])
        print(f"\ninterop: {n} cases recorded in {out}/export_loaders.json")
