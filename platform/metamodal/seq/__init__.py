"""Sequential recommendation: "what next, given this history?" — each user's items in time
order, leave-last-out by time, SASRec-family models on Ray Train, and the two evaluation
protocols (the sampled one of the MMSRARec/SASRec papers, and full ranking), always labelled."""
