"""``python -m prodet``: the same as the ``prodet`` console command."""

import sys

from prodet.commands import main

sys.exit(main())
