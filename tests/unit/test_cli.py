"""The command line: help everywhere, and one clear line (not a traceback) on bad input."""

from __future__ import annotations

import pytest

from iwd_stream.cli import build_parser, main

COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def test_every_command_has_help(capsys):
    assert {
        "kafka",
        "topics",
        "worker",
        "replay",
        "capture-api",
        "simulate",
        "demo",
        "schemas",
    } <= set(COMMANDS)
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        assert "usage: iwd-stream" in capsys.readouterr().out


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("iwd-stream: error: ")
    assert "Traceback" not in err[0]
    return err[0]


def test_no_broker_is_one_clear_line(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    assert main(["topics", "list", "--cache-dir", str(tmp_path)]) == 2
    assert "no Kafka broker" in one_error_line(capsys)


def test_missing_data_file_is_one_clear_line(capsys, tmp_path):
    code = main(["replay", str(tmp_path / "nope.csv"), "--bootstrap-servers", "127.0.0.1:1"])
    assert code == 2
    assert "no such data file" in one_error_line(capsys)


def test_bad_mapping_is_one_clear_line(capsys, tmp_path):
    data = tmp_path / "x.csv"
    data.write_text("id,state\n1,open\n")
    mapping = tmp_path / "m.yaml"
    mapping.write_text("mapping_version: 1\nsource: x\n")
    assert (
        main(["replay", str(data), "--mapping", str(mapping), "--bootstrap-servers", "127.0.0.1:1"])
        == 2
    )
    assert str(mapping) in one_error_line(capsys)


def test_bad_rules_path_is_one_clear_line(capsys, tmp_path):
    code = main(["worker", "--rules", str(tmp_path / "none"), "--bootstrap-servers", "127.0.0.1:1"])
    assert code == 2
    assert "does not exist" in one_error_line(capsys)


def test_invalid_rules_name_the_file_and_the_path(capsys, tmp_path):
    rules = tmp_path / "acme.yaml"
    rules.write_text(
        "rules_version: 1\nclassification:\n  global:\n    - {name: x, when: {priority: {like: 3}}}\n"
    )
    assert main(["worker", "--rules", str(rules), "--bootstrap-servers", "127.0.0.1:1"]) == 2
    line = one_error_line(capsys)
    assert "acme.yaml" in line and "classification.global[0]" in line and "like" in line


def test_invalid_setting_is_one_clear_line(capsys, monkeypatch):
    monkeypatch.setenv("IWD_PARTITIONS", "many")
    assert main(["kafka", "status"]) == 2
    assert "partitions" in one_error_line(capsys)


def test_invalid_worker_option_is_refused_before_starting(capsys):
    assert main(["worker", "--tick-interval", "-1", "--bootstrap-servers", "127.0.0.1:1"]) == 2
    assert "tick_interval_s" in one_error_line(capsys)


def test_worker_web_port_in_use_is_one_clear_line(capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["worker", "--web-port", str(port), "--bootstrap-servers", "127.0.0.1:1"]) == 2
    assert "in use" in one_error_line(capsys)


def test_bad_speed_is_one_clear_line(capsys):
    assert (
        main(["replay", "servicenow", "--speed", "fast", "--bootstrap-servers", "127.0.0.1:1"]) == 2
    )
    assert "--speed" in one_error_line(capsys)
