"""The `hq` command line: the human's door into the company."""
