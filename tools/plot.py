"""Learning curves, results table and aggregate statistics from run directories: a wrapper
for `python -m harl.plot` (the code and its documentation are in harl/plot.py).

    python tools/plot.py results/compare/halfcheetah_2x3 --out curves.png --table results --aggregate agg
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harl.plot import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
