import sys

from sinreq.cli import main

sys.exit(main())
