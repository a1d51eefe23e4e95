"""``python -m shoal.cluster``: one cluster node (see :mod:`shoal.cluster._main`)."""

import sys

from ._main import main

sys.exit(main())
