"""Host side of k210-deploy: the `k210` CLI and everything it drives on the laptop."""
