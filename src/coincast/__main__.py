"""`python -m coincast` runs the command line."""

from coincast.entry import main

main()
