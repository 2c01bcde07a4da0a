"""The real entrypoint as a process: startup, config, signals, graceful drain."""

import json
import signal
import socket

import pytest

from tests.proc import ServerProcess, run_cli
from tests.rawhttp import body_json, connect, read_response
from tests.support import poll


@pytest.fixture
def proc_factory():
    procs = []

    def _start(*args, **kw):
        p = ServerProcess(*args, **kw)
        procs.append(p)
        return p

    yield _start
    for p in procs:
        p.stop()


def test_starts_on_port_0_and_logs_the_real_port(proc_factory, tmp_path):
    p = proc_factory("--port", "0", "--data-dir", str(tmp_path / "d"))
    port = p.wait_port()
    with connect(port) as sock:
        sock.sendall(b"GET /bmad/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200
    assert (tmp_path / "d").is_dir()
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    msgs = [r["msg"] for r in p.records()]
    assert "started" in msgs and "stopped" in msgs


def test_sigterm_lets_an_in_flight_request_finish_then_exits_0(proc_factory, tmp_path):
    p = proc_factory("--port", "0", "--data-dir", str(tmp_path))
    port = p.wait_port()
    payload = json.dumps({"input": "an idea that arrives slowly"}).encode()
    with connect(port, timeout=10) as sock:
        sock.sendall(b"POST /bmad/tools/analyst/preview HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(payload) + payload[:10])
        # Signal only once the server counts the half-sent request as in flight
        # (the scrape itself is the other one).
        assert _wait_in_flight(port, 2)
        p.signal(signal.SIGTERM)
        assert _wait_listener_closed(port), "the listening socket stayed open after SIGTERM" + "".join(p.lines)
        sock.sendall(payload[10:])
        status, headers, body = read_response(sock, 10)
        assert status == 200 and "arrives slowly" in body_json(body)["messages"][1]["content"]
        assert headers["connection"] == "close"
    assert p.wait() == 0


def _wait_in_flight(port, n, seconds=10):
    def in_flight():
        with connect(port) as probe:
            probe.sendall(b"GET /bmad/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            _, _, body = read_response(probe)
        for line in body.decode().splitlines():
            if line.startswith("bmad_http_requests_in_flight ") and float(line.split()[1]) >= n:
                return True
        return False

    return poll(in_flight, timeout=seconds, interval=0.01)


def _wait_listener_closed(port, seconds=10):
    def closed():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return True
        return False

    return poll(closed, timeout=seconds, interval=0.01)


@pytest.mark.slow
def test_config_precedence_defaults_file_env_flags(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"server": {"port": 1111, "max_connections": 7, "drain_seconds": 3}, "log_level": "warning"}))
    out = run_cli("--config", str(cfg), "--print-config", env={"BMAD_PORT": "2222", "BMAD_LOG_LEVEL": "error"})
    assert out.returncode == 0, out.stderr
    eff = json.loads(out.stdout)
    assert eff["server"]["port"] == 2222            # env beats file
    assert eff["server"]["max_connections"] == 7    # file beats defaults
    assert eff["server"]["keepalive_seconds"] == 15  # default
    assert eff["log_level"] == "error"
    out = run_cli("--config", str(cfg), "--print-config", "--port", "3333", env={"BMAD_PORT": "2222"})
    assert json.loads(out.stdout)["server"]["port"] == 3333  # flag beats env
    out = run_cli("--print-config", env={"BMAD_CONFIG": str(cfg)})
    assert json.loads(out.stdout)["server"]["port"] == 1111  # BMAD_CONFIG names the file


def test_toml_config_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\nport = 4444\nheader_timeout_seconds = 2\n')
    out = run_cli("--config", str(cfg), "--print-config")
    eff = json.loads(out.stdout)
    assert eff["server"]["port"] == 4444 and eff["server"]["header_timeout_seconds"] == 2.0


def test_print_config_masks_secrets(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"auth": {"api_keys": [{"key": "sk-very-secret", "user": "alice", "role": "admin"}]},
                               "metrics": {"token": "scrape-secret"}}))
    out = run_cli("--config", str(cfg), "--print-config", env={"BMAD_API_KEYS": "env-secret-key:bob"})
    assert out.returncode == 0
    assert "sk-very-secret" not in out.stdout and "scrape-secret" not in out.stdout
    assert "env-secret-key" not in out.stdout
    eff = json.loads(out.stdout)
    assert eff["auth"]["api_keys"] == [{"key": "***", "user": "bob", "role": "user"}]
    assert eff["metrics"]["token"] == "***"


@pytest.mark.parametrize("content, expected", [
    ({"server": {"prot": 1}}, "server.prot"),
    ({"server": {"port": "eighty"}}, "server.port"),
    ({"server": {"port": 70000}}, "server.port"),
    ({"nonsense": True}, "nonsense"),
    ({"log_level": "loud"}, "log_level"),
    ({"server": {"max_body_bytes": 1.5}}, "server.max_body_bytes"),
    ({"auth": {"api_keys": [{"key": "k", "user": "u", "role": "root"}]}}, "role"),
    ({"auth": {"api_keys": [{"key_env": "MISSING_KEY_VAR", "user": "u"}]}}, "MISSING_KEY_VAR"),
])
def test_bad_config_stops_startup_with_one_clear_line(tmp_path, content, expected):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(content))
    out = run_cli("--config", str(cfg), "--data-dir", str(tmp_path / "d"), timeout=10)
    assert out.returncode != 0
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, out.stderr
    assert expected in lines[0] and "Traceback" not in out.stderr


def test_unreadable_or_invalid_config_file(tmp_path):
    out = run_cli("--config", str(tmp_path / "missing.json"), "--port", "0")
    assert out.returncode != 0 and "missing.json" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = run_cli("--config", str(bad), "--port", "0")
    assert out.returncode != 0 and "bad.json" in out.stderr


def test_bad_environment_value_is_named(tmp_path):
    out = run_cli("--port", "0", env={"BMAD_PORT": "http"})
    assert out.returncode != 0 and "BMAD_PORT" in out.stderr


def test_port_in_use_is_one_clear_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = run_cli("--port", str(port), "--data-dir", str(tmp_path))
    assert out.returncode != 0
    assert f"127.0.0.1:{port}" in out.stderr and "Traceback" not in out.stderr


def test_unwritable_data_dir_is_one_clear_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = run_cli("--port", "0", "--data-dir", str(blocker / "sub"))
    assert out.returncode != 0 and "data_dir" in out.stderr and "Traceback" not in out.stderr


def test_version_flag():
    out = run_cli("--version")
    assert out.returncode == 0 and "2.0.0" in out.stdout


def test_print_config_shows_the_providers_the_environment_adds(tmp_path):
    env = {"OPENAI_API_KEY": "sk-env-openai-secret-1234", "ANTHROPIC_API_KEY": "sk-ant-env-secret-5678"}
    out = run_cli("--print-config", env=env)
    assert out.returncode == 0, out.stderr
    assert "secret" not in out.stdout
    providers = json.loads(out.stdout)["providers"]
    assert [(p["name"], p["type"], p["api_key"]) for p in providers] == [("openai", "openai", "***"),
                                                                         ("anthropic", "anthropic", "***")]
    assert providers[0]["base_url"] == "https://api.openai.com/v1" and "gpt-*" in providers[0]["models"]
    assert providers[1]["models"] == ["claude-*"]
    out = run_cli("--print-config")
    assert json.loads(out.stdout)["providers"] == [{"name": "offline", "type": "offline", "weight": 1.0}]


def test_providers_required_stops_startup_with_one_line_when_none_is_configured(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"providers_required": True, "data_dir": str(tmp_path / "d")}))
    out = run_cli("--config", str(cfg), "--port", "0")
    assert out.returncode == 2
    [line] = out.stderr.strip().splitlines()
    record = json.loads(line)
    assert record["level"] == "error" and "providers_required" in record["msg"]
    assert "no LLM provider is configured" in record["msg"]
