import sys

from directconv.cli import main

sys.exit(main())
