"""The half of vmgen that runs on the workspace VM itself."""
