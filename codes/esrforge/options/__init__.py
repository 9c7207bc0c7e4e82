"""The schemas of whole config files (train, test, video) and their loading; above every component they name."""
