"""``python -m shoal.cli`` is the ``shoal`` command."""

import sys

from ._main import main

sys.exit(main())
