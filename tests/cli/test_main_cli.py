"""``lexactum`` itself: an OSError no command described is still one line, never a traceback."""

from __future__ import annotations

import errno

import pytest

from lexactum.cli import main


@pytest.mark.parametrize(("code", "reason"), [(errno.ENOSPC, "no space left on device"),
                                              (errno.EROFS, "read-only file system"),
                                              (errno.EACCES, "permission denied"),
                                              (errno.EDQUOT, "disk quota exceeded"),
                                              (errno.EIO, "input/output error")])
def test_an_escaped_os_error_is_one_line_naming_the_file(monkeypatch, capsys, code, reason):
    import os

    def fails(args):
        raise OSError(code, os.strerror(code), "/data/out/file.fits")

    monkeypatch.setattr("lexactum.cli.convert.run", fails)
    assert main(["convert", "model.h5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lexactum convert: error: /data/out/file.fits: {reason}")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err

    with pytest.raises(OSError):  # --debug shows the traceback
        main(["convert", "model.h5", "--debug"])
