"""Ray Serve import paths (``serve run serve_apps.recommender:app``); the code is in
``metamodal.serving``."""
