"""``python -m m2s_nnunet.cli ...``: the same as ``m2s-nnunet ...`` (used by jobs and tests)."""

import sys

from m2s_nnunet.cli import main

sys.exit(main())
