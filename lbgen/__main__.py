"""`python -m lbgen`."""
from lbgen.cli import main

main()
