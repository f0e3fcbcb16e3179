import sys

from srsim.cli import main

sys.exit(main())
