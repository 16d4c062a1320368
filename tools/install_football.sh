#!/usr/bin/env bash
# Install Google Research Football (the `gfootball` package) for `env=football`.
#
# gfootball ships only a source distribution: pip compiles its C++ game engine, which takes about
# 15 minutes on 2 cores. This script
#   1. installs the Debian/Ubuntu packages the engine builds against (with sudo unless root),
#   2. installs gfootball's build-time and undeclared Python needs, pinned:
#        psutil  - the engine's build script imports it to choose the make parallelism, and
#                  --no-build-isolation means it has to be installed beforehand;
#        six     - imported by gfootball but missing from its install_requires;
#        gym 0.25.2 - gym 0.26 changed reset()/step(), which gfootball 2.10.2 does not follow;
#   3. pip install --no-build-isolation gfootball==2.10.2 (the compile),
#   4. checks that gfootball imports and plays a step of an academy scenario.
# It is idempotent: installed apt packages and pinned pip versions are left alone, and the compile
# is skipped when gfootball 2.10.2 already imports. Run it in the environment harl runs in, after
# `pip install -r requirements.txt`; PYTHON=/path/to/python picks another interpreter
# (default: python3). Usage: bash tools/install_football.sh
set -euo pipefail

PYTHON="${PYTHON:-python3}"
GFOOTBALL_VERSION="2.10.2"
PIP_PINS=("psutil==7.2.2" "six==1.17.0" "gym==0.25.2")
APT_PACKAGES=(
  build-essential cmake
  libsdl2-dev libsdl2-image-dev libsdl2-ttf-dev libsdl2-gfx-dev
  libboost-thread-dev libboost-system-dev libboost-filesystem-dev libboost-python-dev
  libgl1-mesa-dev libegl-dev
)

say() { printf '\n==> %s\n' "$*"; }
run() { printf '+ %s\n' "$*"; "$@"; }

say "Python: $(command -v "$PYTHON") ($("$PYTHON" --version 2>&1))"

# ---------------------------------------------------------------- 1. system packages
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  say "System packages: all ${#APT_PACKAGES[@]} already installed"
else
  say "System packages: installing ${missing[*]}"
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not found: install the equivalents of these packages with your package manager," >&2
    echo "then run this script again: ${missing[*]}" >&2
    exit 1
  fi
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
  fi
  run "${SUDO[@]}" apt-get update
  run "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# ---------------------------------------------------------------- 2. Python prerequisites
say "Python prerequisites: ${PIP_PINS[*]}"
run "$PYTHON" -m pip install "${PIP_PINS[@]}"

# ---------------------------------------------------------------- 3. gfootball
installed_ok() {
  "$PYTHON" - "$GFOOTBALL_VERSION" <<'EOF' >/dev/null 2>&1
import importlib.metadata, sys
assert importlib.metadata.version("gfootball") == sys.argv[1]
import gfootball.env, gfootball_engine  # gfootball_engine holds the compiled engine
EOF
}
if installed_ok; then
  say "gfootball $GFOOTBALL_VERSION: already installed, skipping the compile"
else
  say "gfootball $GFOOTBALL_VERSION: compiling the game engine (about 15 minutes on 2 cores)"
  run "$PYTHON" -m pip install -v --no-build-isolation "gfootball==$GFOOTBALL_VERSION"
fi

# ---------------------------------------------------------------- 4. check
say "Check: import gfootball and play one step of academy_3_vs_1_with_keeper"
"$PYTHON" - <<'EOF'
import gfootball
from gfootball.env import create_environment

env = create_environment(env_name="academy_3_vs_1_with_keeper", representation="simple115v2",
                         rewards="scoring", number_of_left_players_agent_controls=3)
obs = env.reset()
obs, reward, done, info = env.step([0, 0, 0])
env.close()
assert obs.shape == (3, 115), obs.shape
print(f"gfootball works: {gfootball.__file__}, observation {obs.shape}")
EOF
say "Done: env=football is ready"
