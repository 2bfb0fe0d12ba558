"""``tracecode rehearse`` (issue 20 item 5): the many-hosts layout on one machine — two API
processes and a worker on this session's PostgreSQL and Redis — under the locust scenario,
briefly; the counts must add up. And ``tracecode run``'s process-count options refuse bad input.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main
from app.ops.rehearsal import metrics_count, rehearse


def test_rehearsal_two_api_processes_counts_add_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACECODE_VAR_DIR", str(tmp_path / "var"))
    report = rehearse(seconds=6, users=4, api_processes=2, count=120)
    print("\n".join(report.lines()))
    assert len(report.apis) == 2
    assert len({api.url for api in report.apis}) == 2
    assert all(api.verify_200 > 0 for api in report.apis), "both API processes served requests"
    assert report.failures == 0
    assert report.requests > 20
    served = sum(api.verify_200 for api in report.apis)
    assert served == report.answered_200 == report.requests
    assert report.rows == report.answered_200, "every answered verification stored once"
    assert report.adds_up
    # the processes were stopped with the rehearsal
    with pytest.raises(OSError):
        metrics_count(report.apis[0].url)


@pytest.mark.parametrize(
    "argv",
    [
        ["rehearse", "--seconds", "0"],
        ["rehearse", "--seconds", "99999"],
        ["rehearse", "--users", "0"],
        ["rehearse", "--api-processes", "0"],
        ["rehearse", "--api-processes", "2", "--codes", "59"],
        ["run", "--worker-processes", "0"],
        ["run", "--api-workers", "0"],
        ["run", "--api-workers", "65"],
    ],
)
def test_process_counts_refuse_bad_input(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert "tracecode:" in capsys.readouterr().err


def test_process_counts_refuse_non_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--worker-processes", "many"])
    assert exc.value.code == 2
    assert "invalid int value" in capsys.readouterr().err
