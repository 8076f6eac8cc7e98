"""MMA, the Meta-Modal Agent: episodes over a retriever's candidate pools, evidence tools that
answer only from what an episode observes, per-episode statistics, route menus with their
full-information rewards, the LLM menu router and its non-LLM controls (RuleRouter-Fuse per
bucket, the best fixed route, the learned gate), and the one reranker interface Serve loads."""
