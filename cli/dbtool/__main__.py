"""`python -m cli`: the same as the `dbtool` console script."""

from dbtool.app import main

main()
