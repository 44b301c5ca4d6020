import sys

from harness.reports.cli import main

sys.exit(main())
