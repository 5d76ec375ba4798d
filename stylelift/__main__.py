"""`python -m stylelift` and the `stylelift` command: the command line, where a Ctrl-C while it is
still being imported (most of a second) is said as one during a command, not as a traceback."""

import os
import sys


def main() -> None:
    for fd in (0, 1, 2):  # a closed stdin, stdout or stderr (`>&-`) is /dev/null for what writes to it below Python
        try:  # (torch's C++ warnings, ffmpeg), which would otherwise write into the next file opened, an output
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: this one
    if sys.stderr is None:  # Python found it closed: progress and error lines go nowhere, as they would have
        sys.stderr = open(os.devnull, "w")  # (stdout stays None: a result that cannot be written is an error, exit 1)
    try:
        from .cli import run
    except KeyboardInterrupt:
        try:
            sys.stderr.write("interrupted\n")
        except OSError:  # a closed terminal: nothing can be said
            pass
        sys.exit(130)
    run()


if __name__ == "__main__":
    main()
