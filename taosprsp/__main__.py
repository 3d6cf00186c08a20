"""`python -m taosprsp`: the `taosprsp` command, as background processes are started."""

from taosprsp.cli import main

if __name__ == "__main__":
    main()
