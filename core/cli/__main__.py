"""``python -m fusionrec.core.cli``: the same as the ``fusionrec`` command."""

import sys

from fusionrec.core.cli import main

sys.exit(main())
