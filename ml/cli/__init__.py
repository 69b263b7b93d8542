"""The command-line tools: `model-export`, `model-rollout` and the demo store builder."""
