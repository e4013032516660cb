"""The network, the baselines and the estimator around them."""
