"""Which exceptions the CLI treats as a user's mistake (one line, exit 1) and which it lets through."""

import pytest
import typer
from a2d_guard.cli.errors import user_errors_exit_1

from a2d_guard.errors import A2DGuardError


def _command(exc: BaseException):
    @user_errors_exit_1
    def command():
        raise exc

    return command


def test_a2d_guard_error_is_one_line_and_exit_1(capsys):
    with pytest.raises(typer.Exit) as info:
        _command(A2DGuardError("--batch must be >= 1, got 0"))()
    assert info.value.exit_code == 1
    assert capsys.readouterr().err == "error: --batch must be >= 1, got 0\n"


def test_a_missing_path_names_the_path(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(typer.Exit):
        _command(FileNotFoundError(2, "No such file or directory", str(missing)))()
    assert capsys.readouterr().err == f"error: No such file or directory: {str(missing)!r}\n"


@pytest.mark.parametrize("exc", [ValueError("shape mismatch in a matmul"), KeyError("weight"), TypeError("bad")])
def test_a_bug_keeps_its_traceback(exc):
    """A plain ValueError comes from code, not from the user: it must not be turned into one line."""
    with pytest.raises(type(exc)):
        _command(exc)()
