"""MMA, the Meta-Modal Agent: episodes over a retriever's candidate pools, evidence tools that
answer only from what an episode observes, the action grammar and reward a policy learns
under, balanced missingness-task sampling, and RuleRouter-Fuse, the deterministic control."""
