"""``python -m minires ...`` is the ``minires`` command."""
import sys

from .cli import main

sys.exit(main())
