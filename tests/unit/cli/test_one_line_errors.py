"""The command line: one module per subcommand, each running in the one error wrapper."""

from __future__ import annotations

import pytest

from nnlab.cli import entry
from nnlab.cli.one_line_errors import one_line_errors


def test_every_subcommand_module_adds_its_parser_and_runs_its_body() -> None:
    parser = entry.parser()
    commands = next(action for action in parser._actions if action.dest == "command")
    names = set(commands.choices)  # type: ignore[union-attr]
    assert names == {"check", "predict", "ui", "promote", "export", "serve", "server", "push",
                     "pull", "sweep", "repeat", "join"}
    for module in entry.SUBCOMMANDS:
        assert callable(module.add_parser), module.__name__
    for name, subparser in commands.choices.items():  # type: ignore[union-attr]
        assert callable(subparser.get_default("handler")), name


def test_a_users_error_is_one_line_and_the_exit_code(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    with pytest.raises(SystemExit) as stop, one_line_errors("check"):
        raise ValueError("data.image_size=3: at least 8; raise it")
    assert stop.value.code == 2
    assert capsys.readouterr().err == "nnlab check: error: data.image_size=3: at least 8; " \
        "raise it\n"

    class Refused(Exception):
        pass

    with pytest.raises(SystemExit) as stop, one_line_errors("sweep", errors=(Refused,), code=1):
        raise Refused("the study's storage did not answer")
    assert stop.value.code == 1
    with pytest.raises(KeyError), one_line_errors("check"):  # a bug stays a traceback
        raise KeyError("x")
