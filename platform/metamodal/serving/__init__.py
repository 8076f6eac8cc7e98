"""Serving: the recommender app's cores (retrieval, reranking), its HTTP contract and its Ray
Serve deployments."""
