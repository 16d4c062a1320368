"""python -m harl.reproduce <suite> [--seeds 1,2,3] [--budget N] [--only PATTERNS] [--jobs N]"""

import sys

from harl.reproduce.cli import main

sys.exit(main())
