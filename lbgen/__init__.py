"""lbgen: discover Docker backends, render nginx/HAProxy configs, and switch traffic between releases."""
from __future__ import annotations

__version__ = "0.1.0"
