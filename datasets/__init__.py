"""Dataset loaders, installed as `pointclora.datasets`."""
