"""The backend tests' helpers (`backend_runs`) and scripts live beside them."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
