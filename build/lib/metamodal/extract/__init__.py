"""Embedding extraction: encoders, Ray Data stages, the sharded resumable job."""
