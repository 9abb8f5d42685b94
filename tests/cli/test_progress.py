"""Progress on stderr: a bar on a terminal, plain lines in a log."""

from __future__ import annotations


def test_stage_progress_prints_stages_and_periodic_lines_without_a_terminal(capsys):
    """Issue 23 item 2: a `make` log sees a line per stage and one every interval, not silence."""
    from pss_bench.cli.progress import stage_progress

    now = [0.0]
    with stage_progress("demo", interval_s=10.0, clock=lambda: now[0]) as update:
        for done in range(0, 31):
            update("predict PSS", done, 30)
            now[0] += 1.0
        update("report", 0, 1)
        now[0] += 2.0
        update("report", 1, 1)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "demo: predict PSS (30 to do) ...",
        "demo: predict PSS: 10/30 (33%), 10 s",
        "demo: predict PSS: 20/30 (66%), 20 s",
        "demo: predict PSS: 30/30 done in 30 s",
        "demo: report (1 to do) ...",
        "demo: report: 1/1 done in 2 s",
        "demo: 33 s in all",
    ]
