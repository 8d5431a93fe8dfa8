"""`python -m nnlab.cli ...`: the `nnlab` command."""

from nnlab.cli.entry import main

main()
