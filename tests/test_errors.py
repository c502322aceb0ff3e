"""One user-error hierarchy, one command-line handler, one atomic writer."""

import pytest

from omniperceiver import errors
from omniperceiver.cli import report_user_errors
from omniperceiver.files import write_atomically


@pytest.mark.parametrize("kind", [errors.ConfigError, errors.UnknownModelError,
                                  errors.CommandError, errors.ModelFileError,
                                  errors.InputFileError, errors.DatasetError,
                                  errors.MissingProgramError, errors.NonFiniteLossError])
def test_every_user_error_is_one_catchable_value_error(kind):
    assert issubclass(kind, errors.OmniPerceiverError) and issubclass(kind, ValueError)


def test_a_user_error_anywhere_in_the_chain_is_printed_without_a_traceback(capsys):
    def run():
        try:
            raise errors.DatasetError("data/x.png: cannot decode image")
        except errors.DatasetError as error:
            raise RuntimeError("wrapped by a framework") from error

    assert report_user_errors("omniperceiver fit", run) == 1
    err = capsys.readouterr().err
    assert err == "omniperceiver fit: error: data/x.png: cannot decode image\n"


def test_other_errors_keep_their_traceback():
    def run():
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        report_user_errors("omniperceiver fit", run)


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomically(path, fail)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    write_atomically(path, lambda f: f.write(b"new"))
    assert path.read_text() == "new"
