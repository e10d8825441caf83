"""tests/mxnet's modules share tests/faults.py with the main environment's
fault suites; pytest puts only this folder on the path."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
