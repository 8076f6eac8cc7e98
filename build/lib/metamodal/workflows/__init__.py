"""End-to-end workflows the CLI and the jobs call: each writes its results to a directory."""
