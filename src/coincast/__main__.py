"""`python -m coincast` runs the command line."""

from coincast.cli import main

main()
