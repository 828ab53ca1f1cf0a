"""`python -m fast3r.train train CONFIG ...` / `python -m fast3r.train train-curves ...`."""
import sys

from .command import main

sys.exit(main())
