"""``python -m fusionrec.core.cli``: the same as the ``fusionrec`` command."""

import sys

from fusionrec.core.cli import main

if __name__ == "__main__":
    sys.exit(main())
