"""`python -m cli`: the same as the `dbtool` console script."""

from cli.main import main

main()
