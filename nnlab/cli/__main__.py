"""`python -m nnlab.cli ...`: the `nnlab` command."""

from nnlab.cli.main import main

main()
