"""jobforge: AWS machine-learning job APIs, served and really run."""

__version__ = "0.1.0"
