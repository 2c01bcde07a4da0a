"""Replays the fuzz target's seed inputs and the inputs of every crash it found (now fixed).

The fuzzer itself runs on demand (see tests/fuzz/fuzz_request.py); this keeps its
harness working and its findings fixed in every test run.
"""

from pathlib import Path

import pytest

from tests.fuzz import fuzz_request

FUZZ_DIR = Path(fuzz_request.__file__).parent
INPUTS = sorted((FUZZ_DIR / "seeds").iterdir()) + sorted((FUZZ_DIR / "regressions").iterdir())


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    server = fuzz_request.build_server(str(tmp_path_factory.mktemp("fuzz-data")))
    yield server
    server.server_close()
    server.app.shutdown()


@pytest.mark.parametrize("path", INPUTS, ids=[f"{p.parent.name}/{p.name}" for p in INPUTS])
def test_fuzz_input_is_answered_cleanly(fuzz_server, path, monkeypatch):
    monkeypatch.setattr(fuzz_request, "_server", fuzz_server)
    fuzz_request.test_one_input(path.read_bytes())
