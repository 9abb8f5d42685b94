"""Every command's ``--help`` ends with one example line, as git and gh show (issue 23 item 12)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from pss_bench.cli import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


@pytest.mark.parametrize("path", list(_commands(cli)), ids=" ".join)
def test_help_ends_with_an_example_of_the_command(path):
    res = CliRunner().invoke(cli, [*path, "--help"])
    assert res.exit_code == 0
    lines = [line.strip() for line in res.output.strip().splitlines()]
    assert lines[-2] == "Example:"
    words = lines[-1].split()
    assert words[0] == "pss-bench" and words[1] == path[0]
    # a subcommand's example runs that subcommand (a group's runs one of its own)
    if len(path) > 1:
        assert words[2] == path[1]
    # every option the example uses exists on the command it runs
    cmd = cli
    for w in words[1:]:
        if isinstance(cmd, click.Group) and w in cmd.commands:
            cmd = cmd.commands[w]
    opts = {o for p in cmd.params for o in p.opts}
    assert {w for w in words if w.startswith("--")} <= opts

