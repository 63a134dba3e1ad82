"""The core tests import their numpy helpers (summaries.py) from this folder."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
