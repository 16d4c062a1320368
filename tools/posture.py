"""Which way up a planar MaMuJoCo robot runs under a run's checkpoint: a wrapper for
`python -m harl.posture` (the code and its documentation are in harl/posture.py).

    python tools/posture.py results/reproduce/mamujoco-offpolicy/halfcheetah_2x3/hasac/seed1
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harl.posture import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
