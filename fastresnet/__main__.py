"""python -m fastresnet bench|verify ..."""

import sys

from .bench.cli import main

sys.exit(main())
