"""Shared test setup.

Until the package is installed (``pip install -e .``) or pytest is configured with
``pythonpath``, put the source checkout first on ``sys.path`` so ``import hwsim`` works.
"""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))
